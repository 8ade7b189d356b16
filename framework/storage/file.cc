#include "framework/storage/file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace caracal::storage {
namespace {

absl::StatusCode CodeForErrno(int err) {
  switch (err) {
    case ENOENT: return absl::StatusCode::kNotFound;
    case EEXIST: return absl::StatusCode::kAlreadyExists;
    case EACCES:
    case EPERM:
    case EROFS: return absl::StatusCode::kPermissionDenied;
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE: return absl::StatusCode::kResourceExhausted;
    case EINVAL: return absl::StatusCode::kInvalidArgument;
    default: return absl::StatusCode::kInternal;
  }
}

class PosixFile : public SegmentFile {
 public:
  PosixFile(int fd, std::string path, uint64_t size) : fd_(fd), path_(std::move(path)), size_(size) {}
  ~PosixFile() override { ::close(fd_); }

  absl::Status Append(std::string_view data) override {
    uint64_t offset = size_;
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        absl::Status error = ErrnoStatus(n < 0 ? errno : EIO, absl::StrCat("write to ", path_));
        if (::ftruncate(fd_, static_cast<off_t>(offset)) != 0) {
          return absl::DataLossError(absl::StrCat(std::string(error.message()), "; cutting ", path_,
                                                  " back to ", offset, " bytes also failed: ", strerror(errno),
                                                  "; the file now ends in a partial record"));
        }
        return error;
      }
      done += static_cast<size_t>(n);
    }
    size_ += data.size();
    return absl::OkStatus();
  }

  absl::Status ReadAt(uint64_t offset, size_t n, std::string* out) const override {
    out->resize(n);
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_, out->data() + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return ErrnoStatus(errno, absl::StrCat("read of ", path_));
      if (r == 0) {
        return absl::DataLossError(
            absl::StrCat(path_, ": file ends at ", offset + done, ", expected ", n - done, " more bytes"));
      }
      done += static_cast<size_t>(r);
    }
    return absl::OkStatus();
  }

  absl::Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      return ErrnoStatus(errno, absl::StrCat("truncate of ", path_, " to ", size, " bytes"));
    }
    size_ = size;
    return absl::OkStatus();
  }

  absl::Status Preallocate(uint64_t bytes) override {
    if (bytes <= size_) return absl::OkStatus();
    if (::fallocate(fd_, 0, 0, static_cast<off_t>(bytes)) != 0) {
      return ErrnoStatus(errno, absl::StrCat("fallocate of ", path_, " to ", bytes, " bytes"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int> Sync() override {
    if (::fdatasync(fd_) != 0) return ErrnoStatus(errno, absl::StrCat("fdatasync of ", path_));
    return 1;
  }

  uint64_t size() const override { return size_; }

 private:
  const int fd_;
  const std::string path_;
  uint64_t size_;  // only the writer thread touches it
};

class MemoryFile : public SegmentFile {
 public:
  absl::Status Append(std::string_view data) override {
    std::lock_guard lock(mu_);
    data_.append(data);
    return absl::OkStatus();
  }
  absl::Status ReadAt(uint64_t offset, size_t n, std::string* out) const override {
    std::lock_guard lock(mu_);
    if (offset > data_.size() || data_.size() - offset < n) {
      return absl::DataLossError(absl::StrCat("memory segment: read of ", n, " bytes at ", offset, " past its end ",
                                              data_.size()));
    }
    out->assign(data_, offset, n);
    return absl::OkStatus();
  }
  absl::Status Truncate(uint64_t size) override {
    std::lock_guard lock(mu_);
    if (size < data_.size()) data_.resize(size);
    return absl::OkStatus();
  }
  absl::Status Preallocate(uint64_t) override { return absl::OkStatus(); }
  absl::StatusOr<int> Sync() override { return 0; }
  uint64_t size() const override {
    std::lock_guard lock(mu_);
    return data_.size();
  }

 private:
  mutable std::mutex mu_;  // readers copy while the writer appends (which may reallocate)
  std::string data_;
};

}  // namespace

absl::Status ErrnoStatus(int err, std::string_view what) {
  return absl::Status(CodeForErrno(err), absl::StrCat(std::string(what), " failed: ", strerror(err)));
}

absl::StatusOr<std::unique_ptr<SegmentFile>> OpenPosixFile(const std::filesystem::path& path, bool create,
                                                           bool read_only) {
  int flags = O_CLOEXEC | (read_only ? O_RDONLY : O_RDWR);
  if (create) flags |= O_CREAT | O_EXCL;
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open of ", path.string()));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = ErrnoStatus(errno, absl::StrCat("stat of ", path.string()));
    ::close(fd);
    return s;
  }
  return std::unique_ptr<SegmentFile>(new PosixFile(fd, path.string(), static_cast<uint64_t>(st.st_size)));
}

std::unique_ptr<SegmentFile> NewMemoryFile() { return std::make_unique<MemoryFile>(); }

absl::Status SyncDirectory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open of directory ", dir.string()));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, absl::StrCat("fsync of directory ", dir.string()));
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::filesystem::path& dir, const std::string& name, std::string_view data) {
  std::filesystem::path tmp = dir / (name + ".tmp");
  std::filesystem::path target = dir / name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("create of ", tmp.string()));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status s = ErrnoStatus(n < 0 ? errno : EIO, absl::StrCat("write of ", tmp.string()));
      ::close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    absl::Status s = ErrnoStatus(errno, absl::StrCat("fsync of ", tmp.string()));
    ::close(fd);
    return s;
  }
  ::close(fd);
  if (absl::Status s = RenameFile(tmp, target); !s.ok()) return s;
  return SyncDirectory(dir);
}

absl::StatusOr<std::string> ReadWholeFile(const std::filesystem::path& path) {
  auto file = OpenPosixFile(path, /*create=*/false, /*read_only=*/true);
  if (!file.ok()) return file.status();
  std::string data;
  if (absl::Status s = (*file)->ReadAt(0, (*file)->size(), &data); !s.ok()) return s;
  return data;
}

absl::Status RenameFile(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoStatus(errno, absl::StrCat("rename of ", from.string(), " to ", to.string()));
  }
  return absl::OkStatus();
}

absl::Status RemoveFile(const std::filesystem::path& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("unlink of ", path.string()));
  }
  return absl::OkStatus();
}

}  // namespace caracal::storage
