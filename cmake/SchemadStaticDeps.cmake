# SCHEMAD_STATIC_DEPS: link abseil, protobuf, gRPC (with its own upb, re2,
# c-ares, address_sorting, gpr) and libpqxx from Debian's static archives
# into every executable of this build, keeping glibc, libstdc++, libpq,
# OpenSSL, zlib, libsystemd and the smaller libraries (spdlog, fmt, yaml-cpp,
# prometheus-cpp, libpg_query) shared. Why: a process start of the dynamic
# schemactl loaded 78 shared libraries and spent most of its time in the
# dynamic loader's symbol lookups (docs/benchmarks.md, issue 11).
#
# The packages' CMake files import the shared libraries; this retargets those
# imported targets at the archive beside each one (libX.so.N -> libX.a), so the
# link lines, their order and the targets' dependencies stay as the packages
# declare them. The installed SDK is not affected: its CMake package names the
# targets (gRPC::grpc++, absl::status, ...), and a consumer's find_package
# resolves them as it chooses.
#
# gRPC 1.51 registers its resolvers, load balancers and credentials from
# grpc_init() (BuildCoreConfiguration), not from static initializers, so the
# archives need no --whole-archive; the one static initializer we rely on,
# the reflection plugin's, is replaced by server.cc's ReflectionOption, which
# adds the plugin explicitly.

# Prints the static archive beside the shared library LIBRARY, or "" when
# Debian ships none.
function(_schemad_static_archive library out_var)
  set(${out_var} "" PARENT_SCOPE)
  if(NOT library MATCHES "^(.*/)?lib([^/]+)\\.so(\\.[0-9.]+)?$")
    return()
  endif()
  set(candidate "${CMAKE_MATCH_1}lib${CMAKE_MATCH_2}.a")
  if(EXISTS "${candidate}")
    set(${out_var} "${candidate}" PARENT_SCOPE)
  endif()
endfunction()

# Retargets the imported library TARGET (SHARED or UNKNOWN) at its archive;
# fails naming the target when there is none, so that a half-static binary
# (a library both linked in and loaded, with two copies of its globals, e.g.
# protobuf's descriptor pool) cannot be built by accident.
function(_schemad_link_target_statically target)
  foreach(property IMPORTED_LOCATION IMPORTED_LOCATION_NONE IMPORTED_LOCATION_RELEASE
                   IMPORTED_LOCATION_RELWITHDEBINFO IMPORTED_LOCATION_DEBUG)
    get_target_property(location ${target} ${property})
    if(location)
      _schemad_static_archive("${location}" archive)
      if(NOT archive)
        message(FATAL_ERROR "SCHEMAD_STATIC_DEPS: no static archive beside ${location} (${target})")
      endif()
      set_target_properties(${target} PROPERTIES ${property} "${archive}")
      set(retargeted TRUE)
    endif()
  endforeach()
  if(NOT retargeted)
    message(FATAL_ERROR "SCHEMAD_STATIC_DEPS: ${target} has no imported location")
  endif()
  foreach(property IMPORTED_SONAME IMPORTED_SONAME_NONE)
    set_property(TARGET ${target} PROPERTY ${property})
  endforeach()
endfunction()

# Replaces the shared libraries in an INTERFACE target's link libraries (the
# pkg-config targets: re2::re2 from gRPC's Findre2, PkgConfig::PQXX) with their
# archives, keeping the other entries.
function(_schemad_link_interface_statically target)
  get_target_property(libraries ${target} INTERFACE_LINK_LIBRARIES)
  set(result "")
  set(found FALSE)
  foreach(library IN LISTS libraries)
    if(library MATCHES "^-l(.+)$")
      set(name "${CMAKE_MATCH_1}")
      find_library(_schemad_lib_${name} NAMES ${name})
      set(library "${_schemad_lib_${name}}")
    endif()
    _schemad_static_archive("${library}" archive)
    if(archive)
      list(APPEND result "${archive}")
      set(found TRUE)
    else()
      list(APPEND result "${library}")
    endif()
  endforeach()
  if(NOT found)
    message(FATAL_ERROR "SCHEMAD_STATIC_DEPS: no static archive for ${target} (${libraries})")
  endif()
  set_target_properties(${target} PROPERTIES INTERFACE_LINK_LIBRARIES "${result}")
endfunction()

# Call in the directory that ran the find_package calls (imported targets are
# visible from there down).
function(schemad_link_deps_statically)
  get_directory_property(imported IMPORTED_TARGETS)
  foreach(target IN LISTS imported)
    get_target_property(type ${target} TYPE)
    if(NOT type MATCHES "^(SHARED|UNKNOWN)_LIBRARY$")
      continue()
    endif()
    if(target MATCHES "^(absl|gRPC)::" OR target STREQUAL "protobuf::libprotobuf"
       OR target STREQUAL "c-ares::cares")
      _schemad_link_target_statically(${target})
    endif()
  endforeach()
  _schemad_link_interface_statically(re2::re2)
  if(TARGET PkgConfig::PQXX)
    _schemad_link_interface_statically(PkgConfig::PQXX)
    # libpqxx.pc names libpq only under Libs.private; the archive needs it
    # after itself on every link line (tests/testing's fixture links libpqxx
    # alone).
    set_property(TARGET PkgConfig::PQXX APPEND PROPERTY INTERFACE_LINK_LIBRARIES pq)
  endif()
  # Shared libraries only where a symbol is used (a DT_NEEDED entry the
  # loader must open and search is start-up time), and the linker's
  # optimised hash tables.
  add_link_options(LINKER:--as-needed LINKER:-O1)
endfunction()
