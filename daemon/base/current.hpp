#pragma once
// A value that is replaced whole (on reload) while readers keep using the
// version they took: readers get a shared_ptr to an immutable value.

#include <memory>
#include <mutex>

namespace privacyd {

template <class T>
class Current {
 public:
  explicit Current(T value) : value_(std::make_shared<const T>(std::move(value))) {}

  std::shared_ptr<const T> get() const {
    std::lock_guard lock(mutex_);
    return value_;
  }
  void replace(T value) {
    auto next = std::make_shared<const T>(std::move(value));
    std::lock_guard lock(mutex_);
    value_ = std::move(next);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const T> value_;
};

}  // namespace privacyd
