/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target: the kekd.conf parser on arbitrary text; every failure must come with a message. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = malloc(size + 1), *error = NULL;
        Config *c = NULL;
        int r;

        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        r = config_load_string(text, "fuzz.conf", &c, &error);
        if (r < 0 && (!error || strncmp(error, "fuzz.conf", 9) != 0))
                abort();
        if (r >= 0 && (!c || !c->module || !c->token_uri || !c->pin_file))
                abort();
        config_free(c);
        free(error);
        free(text);
        return 0;
}
