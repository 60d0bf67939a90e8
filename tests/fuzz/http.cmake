# The HTTP request-path fuzz target (option TCPSTATESD_FUZZ, preset `fuzz`; needs clang).
# Included from tests/fuzz/CMakeLists.txt. The server and the config code it uses are compiled into the
# target with the fuzzer's instrumentation and sanitizers (the Accept header's negotiation and
# the exposition formats' writers included); libmicrohttpd itself is Debian's.
set(HTTP_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
                    -fno-omit-frame-pointer)
add_executable(http_fuzz
  ${CMAKE_CURRENT_LIST_DIR}/http_fuzz.cpp
  ${CMAKE_SOURCE_DIR}/daemon/http/access_policy.cpp
  ${CMAKE_SOURCE_DIR}/daemon/http/connection_deadlines.cpp
  ${CMAKE_SOURCE_DIR}/daemon/http/content_encoding.cpp
  ${CMAKE_SOURCE_DIR}/daemon/http/http_server.cpp
  ${CMAKE_SOURCE_DIR}/daemon/http/listening_socket.cpp
  ${CMAKE_SOURCE_DIR}/daemon/http/routes.cpp
  ${CMAKE_SOURCE_DIR}/daemon/http/shared_bodies.cpp
  ${CMAKE_SOURCE_DIR}/daemon/exposition/collection.cpp
  ${CMAKE_SOURCE_DIR}/daemon/exposition/exposition_format.cpp
  ${CMAKE_SOURCE_DIR}/daemon/exposition/openmetrics_text.cpp
  ${CMAKE_SOURCE_DIR}/daemon/exposition/prometheus_text.cpp
  ${CMAKE_SOURCE_DIR}/daemon/exposition/protobuf_delimited.cpp
  ${CMAKE_SOURCE_DIR}/daemon/exposition/text_syntax.cpp
  ${CMAKE_SOURCE_DIR}/daemon/config/listen_address.cpp
  ${CMAKE_SOURCE_DIR}/daemon/config/web_config.cpp
  ${CMAKE_SOURCE_DIR}/daemon/config/yaml_document.cpp
  ${CMAKE_SOURCE_DIR}/daemon/common/read_file.cpp
)
target_include_directories(http_fuzz PRIVATE ${CMAKE_SOURCE_DIR}/daemon
                                             ${CMAKE_SOURCE_DIR}/bpf ${CMAKE_BINARY_DIR}/generated)
target_compile_options(http_fuzz PRIVATE ${TCPSTATESD_WARNINGS} ${HTTP_FUZZ_FLAGS})
target_link_options(http_fuzz PRIVATE ${HTTP_FUZZ_FLAGS})
target_link_libraries(http_fuzz PRIVATE prometheus-cpp::core protozero PkgConfig::LIBMICROHTTPD
                      PkgConfig::GNUTLS PkgConfig::LIBCRYPT ZLIB::ZLIB spdlog::spdlog yaml-cpp
                      PkgConfig::LIBBPF PkgConfig::LIBSYSTEMD Threads::Threads)

# A bounded run on top of the corpus in the repository; new inputs go to a scratch directory
# in the build tree, a crash leaves crash-* there (to be added to corpus/http/ as a
# regression input). It lasts as long as the YAML targets' runs (FUZZ_SECONDS,
# tests/fuzz/CMakeLists.txt).
add_test(NAME "fuzz: HTTP request path (bounded run)"
         COMMAND ${CMAKE_COMMAND} -E env
                 sh -c "mkdir -p '${CMAKE_BINARY_DIR}/http_corpus' && exec \"$0\" \"$@\""
                 $<TARGET_FILE:http_fuzz> -max_total_time=${FUZZ_SECONDS} -timeout=20
                 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1
                 -artifact_prefix=${CMAKE_BINARY_DIR}/
                 ${CMAKE_BINARY_DIR}/http_corpus ${CMAKE_CURRENT_LIST_DIR}/corpus/http)
set_tests_properties("fuzz: HTTP request path (bounded run)" PROPERTIES LABELS fuzz TIMEOUT 180)
