#ifndef CARACAL_TESTS_TESTING_TEMP_DIR_H_
#define CARACAL_TESTS_TESTING_TEMP_DIR_H_

#include <filesystem>

namespace caracal::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it
// when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace caracal::testing

#endif  // CARACAL_TESTS_TESTING_TEMP_DIR_H_
