# cmake --install rules of the C++ SDK (component `sdk`), for projects that
# use it with find_package(schemad CONFIG) or pkg-config (docs/sdk.md):
#
#   include/schemad/client.h                 the public header
#   include/schemad/mocks/mock_client_connection.h  a gmock ClientConnection
#                                            (for tests; needs GTest::gmock)
#   lib/libschemad_client.a                  schemad::client
#   lib/libschemad_proto.a                   the generated stubs it links
#                                            privately (schemad::detail_proto)
#   lib/cmake/schemad/schemadConfig.cmake    + ConfigVersion, Targets
#   lib/pkgconfig/schemad-client.pc
#
# (lib/ is CMAKE_INSTALL_LIBDIR.) Static libraries: consumers link gRPC,
# protobuf, abseil and OpenSSL themselves, which the package's config finds
# (find_dependency) and the .pc file requires.
include(CMakePackageConfigHelpers)

set(SCHEMAD_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/schemad)

install(FILES ${PROJECT_SOURCE_DIR}/client/sdk/schemad/client.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/schemad COMPONENT sdk)
install(FILES ${PROJECT_SOURCE_DIR}/client/sdk/schemad/mocks/mock_client_connection.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/schemad/mocks COMPONENT sdk)
install(TARGETS schemad_client schemad_proto EXPORT schemadTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT sdk)
install(EXPORT schemadTargets NAMESPACE schemad:: DESTINATION ${SCHEMAD_CMAKE_INSTALL_DIR}
        COMPONENT sdk)

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/schemadConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/schemadConfig.cmake
  INSTALL_DESTINATION ${SCHEMAD_CMAKE_INSTALL_DIR})
# 0.x: a minor version may break the API, so only the same minor is compatible.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/schemadConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/schemadConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/schemadConfigVersion.cmake
        DESTINATION ${SCHEMAD_CMAKE_INSTALL_DIR} COMPONENT sdk)

# The .pc file finds its prefix from its own place (${pcfiledir}), so that an
# install with `cmake --install --prefix DIR` or DESTDIR works as well.
set(SCHEMAD_PC_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${SCHEMAD_PC_INSTALL_DIR}")
  set(SCHEMAD_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH SCHEMAD_PC_PREFIX "/prefix/${SCHEMAD_PC_INSTALL_DIR}" "/prefix")
  string(REGEX REPLACE "/$" "" SCHEMAD_PC_PREFIX "${SCHEMAD_PC_PREFIX}")
  set(SCHEMAD_PC_PREFIX "\${pcfiledir}/${SCHEMAD_PC_PREFIX}")
endif()
foreach(dir INCLUDEDIR LIBDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(SCHEMAD_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(SCHEMAD_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/schemad-client.pc.in
               ${CMAKE_CURRENT_BINARY_DIR}/schemad-client.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/schemad-client.pc
        DESTINATION ${SCHEMAD_PC_INSTALL_DIR} COMPONENT sdk)
