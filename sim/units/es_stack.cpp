// es_stack: the main thread's stack as AddressSanitizer knows it (see es_stack.h).
#include "es_stack.h"

#if defined(__SANITIZE_ADDRESS__)
#define ES_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ES_ASAN 1
#endif
#endif

#ifdef ES_ASAN
#include <cstddef>
#include <sanitizer/common_interface_defs.h>
#endif

namespace es {

#ifdef ES_ASAN
namespace {
const void *main_bottom = nullptr; // the main thread's stack as the sanitizer had it at start
size_t main_size = 0;
char probe_stack[64];              // a stand-in stack for the round trip that reads those bounds
} // namespace

void stack_save()
{
    /* A switch's finish reports the stack switched from: go to the stand-in and straight back,
     * without leaving the main stack, to read the sanitizer's own bounds of the main stack. */
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, probe_stack, sizeof probe_stack);
    __sanitizer_finish_switch_fiber(fake, &main_bottom, &main_size);
    __sanitizer_start_switch_fiber(&fake, main_bottom, main_size);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
}

void stack_restore()
{
    if (!main_size) return;
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, main_bottom, main_size);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
}
#else
void stack_save() {}
void stack_restore() {}
#endif

} // namespace es
