// A self-signed certificate and its key (P-256, CN=tcpstatesd-test, valid until 2126), for the
// tests that need a TLS web config where no openssl command exists (the kernel matrix's guests
// have only busybox). Made with: openssl req -x509 -newkey ec -pkeyopt
// ec_paramgen_curve:P-256 -nodes -days 36500 -subj /CN=tcpstatesd-test. Tests only: the key is
// public.
#pragma once

namespace tcpstatesd::test {

inline constexpr const char* kTestCertificatePem = R"(-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUaCjQJS6eLUlkotu6ByX5jdAH6hwwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPdGNwc3RhdGVzZC10ZXN0MCAXDTI2MTIwNjAzMTI0MVoYDzIx
MjYxMTEyMDMxMjQxWjAaMRgwFgYDVQQDDA90Y3BzdGF0ZXNkLXRlc3QwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQKRYwoObzAKkcmEsTXtDcll0F6mK9sbpoU2FDw
7ssakQAj9pTt83RszolPA4KCH158TYMsgNZ6UqJj9RUEnORgo1MwUTAdBgNVHQ4E
FgQUMrkYV+2K7yal9ve4pgI+Mm2JP8kwHwYDVR0jBBgwFoAUMrkYV+2K7yal9ve4
pgI+Mm2JP8kwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAyNtU
jOVcH11r9q2FoJfo1woxnLyUfVKUFaTJSSGdawMCIGG+r/xl41bktZMbTi9+FjOd
f59PksUOmWnuEdfL0fC8
-----END CERTIFICATE-----
)";

inline constexpr const char* kTestKeyPem = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxt2FxQSTCKOwaEWo
Zyg8UU7YndYEMqczX5PDu+OnK3+hRANCAAQKRYwoObzAKkcmEsTXtDcll0F6mK9s
bpoU2FDw7ssakQAj9pTt83RszolPA4KCH158TYMsgNZ6UqJj9RUEnORg
-----END PRIVATE KEY-----
)";

}  // namespace tcpstatesd::test
