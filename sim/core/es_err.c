/* es_err: formatting of error records (see es_err.h). */
#include "es_err.h"
#include <stdarg.h>
#include <stdio.h>

int es_fail(es_err *e, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}
