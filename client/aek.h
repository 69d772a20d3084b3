/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal side of kek_aek (see aek.c): allocation of an AEK whose bytes the
 * library fills in itself, straight from a kekd response.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "client/libkek.h"

int aek_new(size_t len, kek_aek **ret);
uint8_t *aek_data_mut(kek_aek *a);
