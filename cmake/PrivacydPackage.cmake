# `make deb`: a Debian package by CPack's DEB generator (SPEC §11).
#
#   /usr/bin/privacyd                      stripped; dependencies by dpkg-shlibdeps
#   /lib/systemd/system/privacyd.service   installed, never enabled or started
#   /etc/privacyd/                         conffiles: the production config, the
#                                          workflows, the policies and templates
#   /usr/share/man/man8/privacyd.8.gz      privacyd(8)
#   postinst                               privacyd keys init for /etc/privacyd/keys
#
# The files under /etc come from the repository as they are, except the
# policies that name data systems and partners: the shipped ones describe
# the development demo, so packaging/policies/ holds production examples.

# The binary, the man page and the docs go under the prefix (/usr in the
# package, /usr/local for a plain `cmake --install build`). What goes in
# /etc and /lib/systemd is the package's alone (component "system",
# excluded from a plain install): an install by hand never writes over an
# operator's /etc/privacyd, nor leaves a unit naming a binary elsewhere.
include(GNUInstallDirs)

set(PRIVACYD_PACKAGING ${PROJECT_SOURCE_DIR}/packaging)
set(PRIVACYD_PKG_BUILD ${PROJECT_BINARY_DIR}/packaging)

install(TARGETS privacyd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT privacyd)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/privacyd.service DESTINATION /lib/systemd/system
  COMPONENT system EXCLUDE_FROM_ALL)

# /etc/privacyd: every file a conffile, so dpkg keeps an operator's edits
# across upgrades.
set(PRIVACYD_CONFFILES "")
function(privacyd_conffiles destination)
  cmake_parse_arguments(ARG "" "RENAME" "FILES;PERMISSIONS" ${ARGN})
  foreach(file IN LISTS ARG_FILES)
    get_filename_component(name ${file} NAME)
    if(ARG_RENAME)
      set(name ${ARG_RENAME})
      install(FILES ${file} DESTINATION ${destination} RENAME ${name} PERMISSIONS ${ARG_PERMISSIONS}
        COMPONENT system EXCLUDE_FROM_ALL)
    else()
      install(FILES ${file} DESTINATION ${destination} PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
        COMPONENT system EXCLUDE_FROM_ALL)
    endif()
    list(APPEND PRIVACYD_CONFFILES ${destination}/${name})
  endforeach()
  set(PRIVACYD_CONFFILES ${PRIVACYD_CONFFILES} PARENT_SCOPE)
endfunction()

privacyd_conffiles(/etc/privacyd FILES ${PROJECT_SOURCE_DIR}/config/privacyd.production.yaml
  RENAME privacyd.yaml PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
# It may hold a database password.
privacyd_conffiles(/etc/privacyd FILES ${PRIVACYD_PACKAGING}/environment
  RENAME environment PERMISSIONS OWNER_READ OWNER_WRITE)
file(GLOB PRIVACYD_WORKFLOW_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/workflows/*.yaml)
privacyd_conffiles(/etc/privacyd/workflows FILES ${PRIVACYD_WORKFLOW_FILES})
file(GLOB PRIVACYD_POLICY_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/policies/*.yaml)
file(GLOB PRIVACYD_POLICY_EXAMPLES CONFIGURE_DEPENDS ${PRIVACYD_PACKAGING}/policies/*.yaml)
foreach(example IN LISTS PRIVACYD_POLICY_EXAMPLES)
  get_filename_component(name ${example} NAME)
  list(REMOVE_ITEM PRIVACYD_POLICY_FILES ${PROJECT_SOURCE_DIR}/policies/${name})
endforeach()
privacyd_conffiles(/etc/privacyd/policies FILES ${PRIVACYD_POLICY_FILES} ${PRIVACYD_POLICY_EXAMPLES})
file(GLOB PRIVACYD_TEMPLATE_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/policies/notices/*)
privacyd_conffiles(/etc/privacyd/policies/notices FILES ${PRIVACYD_TEMPLATE_FILES})
list(JOIN PRIVACYD_CONFFILES "\n" PRIVACYD_CONFFILES_TEXT)
file(WRITE ${PRIVACYD_PKG_BUILD}/conffiles "${PRIVACYD_CONFFILES_TEXT}\n")

# The man page and the changelog, compressed as Debian wants them (gzip
# -9n: no name or time inside, so the package builds the same twice).
find_program(GZIP_PROGRAM gzip REQUIRED)
# A native package (no Debian revision): its changelog is changelog.gz.
foreach(pair "privacyd.8;privacyd.8.gz" "changelog;changelog.gz")
  list(GET pair 0 source)
  list(GET pair 1 output)
  add_custom_command(OUTPUT ${PRIVACYD_PKG_BUILD}/${output}
    COMMAND ${GZIP_PROGRAM} -9nc ${PRIVACYD_PACKAGING}/${source} > ${PRIVACYD_PKG_BUILD}/${output}
    DEPENDS ${PRIVACYD_PACKAGING}/${source}
    VERBATIM)
  list(APPEND PRIVACYD_PKG_COMPRESSED ${PRIVACYD_PKG_BUILD}/${output})
endforeach()
add_custom_target(privacyd_package_docs ALL DEPENDS ${PRIVACYD_PKG_COMPRESSED})
install(FILES ${PRIVACYD_PKG_BUILD}/privacyd.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8 COMPONENT privacyd)
# What lintian would warn of on purpose: /etc/privacyd/environment is 0600.
install(FILES ${PRIVACYD_PACKAGING}/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides
  RENAME privacyd COMPONENT privacyd)
install(FILES ${PRIVACYD_PKG_BUILD}/changelog.gz ${PRIVACYD_PACKAGING}/copyright ${PROJECT_SOURCE_DIR}/README.md
  DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/privacyd COMPONENT privacyd)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME privacyd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# One package of both components.
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL privacyd system)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_CONTACT "the privacyd developers <privacyd@privacyd.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "privacy-rights requests for the cloud partner programme")
# CPack puts the summary first and indents the rest as Debian wants.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
  "privacyd takes in access, deletion and disassociation requests through a
signed webhook from the Partner Center, runs each through an
operator-editable YAML workflow, acts on the data systems its policies
name, tells partners what they still hold and people how to reach them,
keeps a hash-chained audit trail and tracks each request's deadline.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "postgresql")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${PRIVACYD_PKG_BUILD}/conffiles;${PRIVACYD_PACKAGING}/postinst;${PRIVACYD_PACKAGING}/prerm;${PRIVACYD_PACKAGING}/postrm")
include(CPack)
