# privacyd_component(NAME SOURCES... [LINK deps...]) declares one component
# library under daemon/ with the project's warning set. Flags go on targets,
# never globally, so third-party headers keep their own.

add_library(privacyd_warnings INTERFACE)
target_compile_options(privacyd_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Woverloaded-virtual -Wconversion -Wsign-conversion
  -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough
  # GCC 12 mistakes Asio's coroutine-frame allocator for a mismatched
  # new/delete pair, a false positive with coroutine frames.
  -Wno-mismatched-new-delete
  $<$<BOOL:${PRIVACYD_WERROR}>:-Werror>)

function(privacyd_component name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LINK" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC "${PROJECT_SOURCE_DIR}")
  target_link_libraries(${name} PUBLIC ${ARG_LINK} PRIVATE privacyd_warnings)
endfunction()
