/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* placeholder */
#include "tests/lib/tap.h"
int main(void) { return tap_done(); }
