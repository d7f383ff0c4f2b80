#pragma once
// Numbered schema migrations, applied in order, each in its own
// transaction; the applied versions are recorded in schema_migrations.

#include <string>
#include <vector>

#include "daemon/store/database.hpp"

namespace privacyd {

struct Migration {
  int version;
  std::string name;
  std::vector<std::string> sqlite;      // statements, one per entry
  std::vector<std::string> postgresql;  // statements, one per entry
};

const std::vector<Migration>& migrations();

struct MigrationReport {
  int from = 0;
  int to = 0;
};

// Brings the schema to the newest version. Safe to run from several
// processes at once: PostgreSQL serialises them on an advisory lock.
MigrationReport migrate(Database& db, Logger& log);

// The newest applied version (0 for an empty database).
int schema_version(Database& db);

}  // namespace privacyd
