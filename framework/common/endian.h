#ifndef CARACAL_FRAMEWORK_COMMON_ENDIAN_H_
#define CARACAL_FRAMEWORK_COMMON_ENDIAN_H_

// Little-endian fixed-width integers in byte buffers: every fixed header
// Caracal writes (record and frame headers, segment headers, the prefix-base
// file) uses these, whatever the host's byte order.

#include <cstdint>

namespace caracal {

inline void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline void PutU64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace caracal

#endif  // CARACAL_FRAMEWORK_COMMON_ENDIAN_H_
