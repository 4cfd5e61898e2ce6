# Debian packages with CPack (`cpack -G DEB` in a build directory; docs/sdk.md,
# "Debian packages"). One package per install component:
#
#   schemad               component schemad: the server, its systemd unit,
#                         sysusers/tmpfiles entries, /etc/schemad/schemad.yaml
#                         (an example, a conffile)
#   schemactl             component schemactl: the command line
#   libschemad-client-dev component sdk: header, static libraries, CMake and
#                         pkg-config files (cmake/SchemadInstallSdk.cmake)
#
# Runtime dependencies of the binaries come from dpkg-shlibdeps; binaries are
# stripped. tests/packaging/deb_test.sh builds and checks the three packages.
set(SCHEMAD_DEB_DIR ${PROJECT_SOURCE_DIR}/deploy/debian)

# The package's own files: the unit of deploy/systemd with the packaged
# binary's path.
file(READ ${PROJECT_SOURCE_DIR}/deploy/systemd/schemad.service SCHEMAD_UNIT_TEXT)
string(REPLACE "/usr/local/bin/schemad" "/usr/bin/schemad" SCHEMAD_UNIT_TEXT
       "${SCHEMAD_UNIT_TEXT}")
string(REPLACE "# /etc/systemd/system/schemad.service" "# /lib/systemd/system/schemad.service (package schemad)"
       SCHEMAD_UNIT_TEXT "${SCHEMAD_UNIT_TEXT}")
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/deb/schemad.service "${SCHEMAD_UNIT_TEXT}")
# Only the package installs these (EXCLUDE_FROM_ALL: a plain cmake --install
# does not touch /etc or systemd's directories).
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/deb/schemad.service
        DESTINATION /lib/systemd/system COMPONENT schemad EXCLUDE_FROM_ALL)
install(FILES ${SCHEMAD_DEB_DIR}/schemad.sysusers DESTINATION /usr/lib/sysusers.d
        RENAME schemad.conf COMPONENT schemad EXCLUDE_FROM_ALL)
install(FILES ${SCHEMAD_DEB_DIR}/schemad.tmpfiles DESTINATION /usr/lib/tmpfiles.d
        RENAME schemad.conf COMPONENT schemad EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/schemad.example.yaml DESTINATION /etc/schemad
        RENAME schemad.yaml COMPONENT schemad EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME schemad)
set(CPACK_PACKAGE_VENDOR "schemad")
set(CPACK_PACKAGE_CONTACT "schemad maintainers <schemad@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Schema-migration service for PostgreSQL (Alembic semantics)")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL schemad schemactl sdk)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_COMPRESSION_TYPE gzip)

set(CPACK_DEBIAN_SCHEMAD_PACKAGE_NAME schemad)
set(CPACK_DEBIAN_SCHEMAD_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_SCHEMAD_PACKAGE_DEPENDS "adduser")
set(CPACK_COMPONENT_SCHEMAD_DESCRIPTION
    "schemad, the schema-migration server for PostgreSQL (gRPC), with its systemd unit")
set(CPACK_DEBIAN_SCHEMAD_PACKAGE_CONTROL_EXTRA
    ${SCHEMAD_DEB_DIR}/schemad/conffiles ${SCHEMAD_DEB_DIR}/schemad/postinst)  # file names are what dpkg reads
set(CPACK_DEBIAN_SCHEMAD_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_SCHEMACTL_PACKAGE_NAME schemactl)
set(CPACK_DEBIAN_SCHEMACTL_PACKAGE_SHLIBDEPS ON)
set(CPACK_COMPONENT_SCHEMACTL_DESCRIPTION
    "schemactl, the command line of schemad (direct on a DSN, or through a schemad server)")

set(CPACK_DEBIAN_SDK_PACKAGE_NAME libschemad-client-dev)
set(CPACK_DEBIAN_SDK_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_SDK_PACKAGE_ARCHITECTURE amd64)
# The static library's link dependencies, as Debian's -dev packages.
set(CPACK_DEBIAN_SDK_PACKAGE_DEPENDS "libgrpc++-dev, libprotobuf-dev, libabsl-dev, libssl-dev")
set(CPACK_COMPONENT_SDK_DESCRIPTION
    "C++ client SDK of schemad: schemad/client.h, a gmock ClientConnection (schemad/mocks), static schemad::client, CMake and pkg-config files")

include(CPack)
