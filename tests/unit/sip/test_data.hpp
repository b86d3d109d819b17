#pragma once
// Reads a test data file byte for byte.
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

namespace sbc::sip::test {

inline std::string read_data(const std::string& relative) {
    std::string path = std::string(SBC_TEST_DATA_DIR) + "/" + relative;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("missing test data file " + path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace sbc::sip::test
