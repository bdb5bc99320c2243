/* The wall clock in Unix milliseconds, the one way every layer reads it. */
#ifndef TANDEM_STORAGE_CLOCK_H
#define TANDEM_STORAGE_CLOCK_H

#include <stdint.h>

/* CLOCK_REALTIME now, in Unix milliseconds: for times recorded or shown, never for intervals
 * (those use the loop's monotonic clock). */
int64_t tandem_wall_ms(void);

#endif
