// es_stack: what AddressSanitizer is told about the main thread's stack around a simulation.
//
// SystemC 2.3.4's QuickThreads port tells AddressSanitizer about a switch between coroutines in
// yield() but not in abort(), the switch taken when an SC_THREAD's function returns; and it
// registers the main coroutine's stack as 0/0. After sc_start returns, the sanitizer may therefore
// believe the main thread still runs on a coroutine's stack (which SystemC frees: LeakSanitizer's
// tracer then faults scanning it at exit) or on no stack at all (never scanned). es_stack_save
// records the sanitizer's own bounds of the main stack before any coroutine runs, and
// es_stack_restore gives them back once the kernel has returned to the main stack. Both do
// nothing in a build without AddressSanitizer. Test: ctest sanitizer_stacks (sanitize preset).
#ifndef ES_STACK_H
#define ES_STACK_H

namespace es {

void stack_save();    // call on the main thread before sc_elab_and_sim / the first sc_start
void stack_restore(); // call on the main thread after every sc_start returns

} // namespace es

#endif
