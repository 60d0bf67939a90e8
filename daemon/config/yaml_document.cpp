#include "config/yaml_document.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <sstream>
#include <vector>

#include "common/read_file.hpp"
#include "config/config.hpp"
#include "config/yaml_reader.hpp"

namespace tcpstatesd {

namespace {

using yaml_reader::Reader;

// yaml-cpp recurses once per nesting level while parsing ("[[[[..." or "- - - - ..."), so
// hostile input could exhaust the stack before yaml-cpp's own guard (2000 levels, too deep for
// a sanitizer build's frames) trips. A real configuration is a few KiB and nests at most
// four levels (labels.port.families: [...]); these bounds leave a wide margin and are checked
// before yaml-cpp sees a byte.
constexpr int kMaxNesting = 32;
constexpr int kMaxIndent = 128;  // bounds the nesting of block mappings

void check_input_bounds(std::string_view text, const Reader& reader) {
    if (text.size() > kMaxConfigFileBytes)
        reader.fail(YAML::Mark::null_mark(),
                    "the file is " + std::to_string(text.size()) + " bytes, more than the " +
                        std::to_string(kMaxConfigFileBytes) + " a configuration may have");
    // Counts flow brackets, and the block-sequence dashes and explicit-key marks that open a
    // line; quoted text and comments are counted too, which errs only on refusing absurd input.
    int flow = 0;
    YAML::Mark mark;
    mark.line = 0;
    mark.column = 0;
    int block = 0;
    bool line_start = true;
    for (char c : text) {
        if (c == '\n') {
            ++mark.line;
            mark.column = 0;
            block = 0;
            line_start = true;
            continue;
        }
        if (c == '[' || c == '{') ++flow;
        if ((c == ']' || c == '}') && flow > 0) --flow;
        if (line_start && (c == '-' || c == '?')) ++block;
        line_start = line_start && (c == ' ' || c == '-' || c == '?' || c == '\t');
        if (flow + block > kMaxNesting)
            reader.fail(mark, "nested more than " + std::to_string(kMaxNesting) +
                                  " levels deep; a configuration nests at most 4");
        if (line_start && mark.column >= kMaxIndent)
            reader.fail(mark, "indented more than " + std::to_string(kMaxIndent) +
                                  " columns; a configuration nests at most 4 levels");
        ++mark.column;
    }
}

// Where byte `offset` of `text` is; columns count bytes, as yaml-cpp's marks do.
YAML::Mark mark_at(std::string_view text, size_t offset) {
    YAML::Mark mark;
    mark.pos = static_cast<int>(offset);
    mark.line = 0;
    mark.column = 0;
    for (const char c : text.substr(0, offset)) {
        mark.column = c == '\n' ? 0 : mark.column + 1;
        mark.line += c == '\n' ? 1 : 0;
    }
    return mark;
}

// The length of the UTF-8 sequence at the start of `rest`, or 0 when it is not valid UTF-8
// (overlong forms, surrogates and code points above U+10FFFF included).
size_t utf8_length(std::string_view rest) {
    const auto at = [&](size_t i) { return static_cast<unsigned char>(rest[i]); };
    const unsigned char lead = at(0);
    if (lead < 0x80) return 1;
    size_t length = 0;
    unsigned char low = 0x80, high = 0xbf;  // the allowed range of the second byte
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    if (lead >= 0xe0 && lead <= 0xef) length = 3;
    if (lead >= 0xf0 && lead <= 0xf4) length = 4;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
    if (length == 0 || rest.size() < length || at(1) < low || at(1) > high) return 0;
    for (size_t i = 2; i < length; ++i)
        if ((at(i) & 0xc0) != 0x80) return 0;
    return length;
}

// YAML allows no control characters but tab and line breaks, and yaml-cpp mishandles them:
// "web: {}\n" and a NUL was reported as an "unknown escape character: \x04" at line 2,
// column 3; invalid UTF-8 went through into values and messages. A configuration is UTF-8
// text, so UTF-16 files (which yaml-cpp would decode) are refused here too, naming the byte.
void check_characters(std::string_view text, const Reader& reader) {
    for (size_t i = 0; i < text.size();) {
        const auto byte = static_cast<unsigned char>(text[i]);
        const bool control =
            (byte < 0x20 && byte != '\t' && byte != '\n' && byte != '\r') || byte == 0x7f;
        const size_t length = utf8_length(text.substr(i));
        if (control || length == 0) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", byte);
            reader.fail(mark_at(text, i),
                        std::string("invalid YAML: ") +
                            (control ? "control character " : "invalid UTF-8 byte ") + hex +
                            " (a configuration is UTF-8 text)");
        }
        i += length;
    }
}

// Records where each document starts; the parser's other events are not needed here.
class DocumentStarts final : public YAML::EventHandler {
public:
    std::vector<YAML::Mark> marks;

    void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  const std::string&) override {}
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
};

// Fails on a second document. yaml-cpp 0.7's LoadAll never returns (allocating without bound)
// when a document starts with a token its parser does not consume, such as a "," outside a
// flow collection (jbeder/yaml-cpp#1040, found by tests/fuzz/config_fuzz): the parser reports
// the same empty document again and again. So documents are walked here, at most three, and a
// document that starts where the previous one did is reported as the unexpected token it is.
void check_single_document(std::string_view text, const Reader& reader,
                           const std::string& document) {
    std::istringstream stream{std::string(text)};
    YAML::Parser parser(stream);
    DocumentStarts starts;
    while (starts.marks.size() < 3 && parser.HandleNextDocument(starts)) {
        const auto& marks = starts.marks;
        // The mark counts decoded characters (a UTF-16 file is decoded), not bytes: it
        // cannot index `text`, hence no quote of the token.
        if (marks.size() >= 2 && marks[marks.size() - 1].pos == marks[marks.size() - 2].pos)
            reader.fail(marks.back(),
                        "invalid YAML: unexpected token (a \",\" outside [ ] or { }?)");
    }
    if (starts.marks.size() > 1)
        reader.fail(starts.marks[1], "a second YAML document; " + document + " is one document");
}

}  // namespace

std::string read_config_file(const std::string& path, const std::string& kind) {
    try {
        return read_file(path, kMaxConfigFileBytes);
    } catch (const FileError& e) {
        throw ConfigError("cannot " + e.action() + " " + kind + " " + e.path() + ": " + e.reason());
    }
}

YAML::Node load_yaml_document(std::string_view text, const std::string& source,
                              const std::string& document) {
    const Reader reader(source);
    check_input_bounds(text, reader);
    check_characters(text, reader);
    try {
        check_single_document(text, reader, document);
        // Load parses the first document only; check_single_document made sure it is the one.
        return YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
        reader.fail(e.mark, "invalid YAML: " + e.msg);
    }
}

}  // namespace tcpstatesd
