#ifndef CARACAL_FRAMEWORK_COMMON_THREAD_NAME_H_
#define CARACAL_FRAMEWORK_COMMON_THREAD_NAME_H_

#include <pthread.h>

namespace caracal {

// Names the calling thread (at most 15 characters) so that top -H, perf and
// gdb tell the io, storage, state machine and client threads apart.
inline void SetThreadName(const char* name) { pthread_setname_np(pthread_self(), name); }

}  // namespace caracal

#endif  // CARACAL_FRAMEWORK_COMMON_THREAD_NAME_H_
