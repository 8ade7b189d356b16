// A main() for a fuzz target built without libFuzzer (the normal GCC build):
// runs LLVMFuzzerTestOneInput once on every file named on the command line,
// or on every file in a named directory, in name order. It is how CTest
// replays the seed corpus and every saved crash as a unit test, so a decoder
// regression fails the ordinary build's tests too, not only the fuzz build.
//
//   frame_fuzz_replay tests/fuzz/corpus/frame_fuzz [more files or dirs...]

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    fs::path arg(argv[i]);
    if (fs::is_directory(arg)) {
      for (const auto& item : fs::directory_iterator(arg)) {
        if (item.is_regular_file()) files.push_back(item.path());
      }
    } else if (fs::is_regular_file(arg)) {
      files.push_back(arg);
    } else {
      std::fprintf(stderr, "%s: no such file or directory\n", argv[i]);
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "no inputs: give corpus files or directories\n");
    return 2;
  }
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // A private heap copy of exactly the input's size, as libFuzzer passes it,
    // so that ASan catches a read past the end.
    std::vector<uint8_t> copy(bytes.begin(), bytes.end());
    LLVMFuzzerTestOneInput(copy.data(), copy.size());
  }
  std::printf("replayed %zu inputs\n", files.size());
  return 0;
}
