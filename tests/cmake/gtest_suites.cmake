# paratorch_gtest_suites(TARGET [TEST_PREFIX PREFIX]): one CTest entry per
# GoogleTest suite of a single-process test executable, found after each
# build (like GoogleTest's gtest_discover_tests, which makes one entry per
# test).
#
# Why suites: every test process loads libtorch first, about 0.6 s of CPU
# on a CI core against a few milliseconds for most unit tests, so one
# process per test cost over three minutes of `make test`. A suite is the
# unit a failure is read in (`--output-on-failure` prints which test), and
# a single test still runs alone with the executable's --gtest_filter.
#
# The entries carry the label `one_process`: `make test` runs them first,
# side by side on every core, then every other test alone (multi-rank
# runs, namespace clusters and deadline checks must not share two cores).
set(PARATORCH_GTEST_SUITES_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/gtest_suites_list.cmake)

function(paratorch_gtest_suites target)
  cmake_parse_arguments(arg "" "TEST_PREFIX" "" ${ARGN})
  set(list_file ${CMAKE_CURRENT_BINARY_DIR}/${target}_suites.cmake)
  set(include_file ${CMAKE_CURRENT_BINARY_DIR}/${target}_suites_include.cmake)
  add_custom_command(TARGET ${target} POST_BUILD
    BYPRODUCTS ${list_file}
    COMMAND ${CMAKE_COMMAND} -D EXECUTABLE=$<TARGET_FILE:${target}> -D OUTPUT=${list_file}
            -D PREFIX=${arg_TEST_PREFIX} -P ${PARATORCH_GTEST_SUITES_SCRIPT}
    VERBATIM)
  # CTest reads this when it runs; a target not built yet shows as one
  # failing entry instead of silently running nothing.
  file(WRITE ${include_file}
    "if(EXISTS \"${list_file}\")\n"
    "  include(\"${list_file}\")\n"
    "else()\n"
    "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${include_file})
endfunction()

# paratorch_one_process_unless_launching(TEST ARGS...): a `paratorch` test
# whose arguments ARGS have no --nproc runs one process (the CLI's default),
# so it too may share the machine: label it one_process.
function(paratorch_one_process_unless_launching test)
  if(NOT "--nproc" IN_LIST ARGN)
    set_tests_properties(${test} PROPERTIES LABELS one_process)
  endif()
endfunction()
