/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kms-bench: Encrypt+Decrypt per second through kek-kms-plugin against
 * kekd's own wrap+unwrap through libkek, in the same run, with the same
 * concurrency (C threads on libkek; C streams in flight on one HTTP/2
 * connection to the plugin) and the same 32-byte seed and context. Run by
 * tests/integration/kms.sh, which prints its rows.
 *
 *   kms-bench PLUGIN_SOCKET KEY SECONDS CONCURRENCY     ($KEKD_SOCKET for libkek)
 */
#include "config.h"

#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/libkek.h"
#include "kms/api.pb-c.h"
#include "kms/grpc.h"
#include "kms/h2.h"

static const char *key;
static double secs;
static uint8_t seed[32];
static char ctx[128];

/* --- libkek: wrap+unwrap in C threads --- */
static kek_client *kc;
static uint64_t t_end_us;

static void *lk_thread(void *arg) {
        unsigned long *n = arg;
        while (kms_now_us() < t_end_us) {
                uint8_t *blob;
                size_t len;
                kek_aek *a;
                if (kek_wrap(kc, key, 0, seed, 32, (uint8_t *) ctx, strlen(ctx), &blob, &len, NULL) < 0)
                        return NULL;
                int r = kek_unwrap(kc, blob, len, (uint8_t *) ctx, strlen(ctx), &a);
                free(blob);
                if (r < 0)
                        return NULL;
                kek_aek_unref(a);
                (*n)++;
        }
        return NULL;
}

static double bench_libkek(unsigned conc) {
        kek_options o = { .cache_disabled = true };
        pthread_t th[64];
        unsigned long n[64] = { 0 }, total = 0;
        if (kek_client_new(&o, &kc) < 0)
                return -1;
        uint64_t t0 = kms_now_us();
        t_end_us = t0 + (uint64_t) (secs * 1e6);
        for (unsigned i = 0; i < conc; i++)
                pthread_create(&th[i], NULL, lk_thread, &n[i]);
        for (unsigned i = 0; i < conc; i++) {
                pthread_join(th[i], NULL);
                total += n[i];
        }
        double r = (double) total / ((double) (kms_now_us() - t0) / 1e6);
        kek_client_free(kc);
        return r;
}

/* --- the plugin: C streams in flight, each Encrypt then Decrypt --- */
typedef struct Slot {
        int32_t id;
        bool decrypting;
        uint8_t req[1200];
        size_t req_len, req_off;
        uint8_t resp[1200];
        size_t resp_len;
        int status;
} Slot;

static Slot slots[64];
static unsigned long pairs, failures;
static unsigned active;      /* streams open */
static nghttp2_session *ses;

static ssize_t rd(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *fl, nghttp2_data_source *src,
                  void *ud) {
        Slot *sl = src->ptr;
        size_t n = MIN(len, sl->req_len - sl->req_off);
        (void) s, (void) id, (void) ud;
        memcpy(buf, sl->req + sl->req_off, n);
        sl->req_off += n;
        if (sl->req_off == sl->req_len)
                *fl |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t) n;
}

static void submit(Slot *sl, const char *method, const ProtobufCMessage *m) {
        char path[64];
        snprintf(path, sizeof(path), "/v2.KeyManagementService/%s", method);
        size_t n = protobuf_c_message_get_packed_size(m);
        grpc_frame_prefix(n, sl->req);
        protobuf_c_message_pack(m, sl->req + 5);
        sl->req_len = n + 5;
        sl->req_off = 0;
        sl->resp_len = 0;
        sl->status = -1;
        nghttp2_nv h[] = {
                { (uint8_t *) ":method", (uint8_t *) "POST", 7, 4, 0 },
                { (uint8_t *) ":scheme", (uint8_t *) "http", 7, 4, 0 },
                { (uint8_t *) ":path", (uint8_t *) path, 5, strlen(path), 0 },
                { (uint8_t *) ":authority", (uint8_t *) "localhost", 10, 9, 0 },
                { (uint8_t *) "content-type", (uint8_t *) "application/grpc", 12, 16, 0 },
                { (uint8_t *) "te", (uint8_t *) "trailers", 2, 8, 0 },
        };
        nghttp2_data_provider prd = { .source.ptr = sl, .read_callback = rd };
        sl->id = nghttp2_submit_request(ses, NULL, h, ELEMENTSOF(h), &prd, sl);
        if (sl->id > 0)
                active++;
}

static void next_encrypt(Slot *sl) {
        V2__EncryptRequest q = V2__ENCRYPT_REQUEST__INIT;
        q.plaintext.data = seed;
        q.plaintext.len = 32;
        q.uid = (char *) "bench";
        sl->decrypting = false;
        submit(sl, "Encrypt", &q.base);
}

static int on_hdr(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl,
                  uint8_t fl, void *ud) {
        Slot *sl = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        (void) fl, (void) ud, (void) vl;
        if (sl && nl == 11 && !memcmp(n, "grpc-status", 11))
                sl->status = atoi((const char *) v);
        return 0;
}

static int on_data(nghttp2_session *s, uint8_t fl, int32_t id, const uint8_t *d, size_t len, void *ud) {
        Slot *sl = nghttp2_session_get_stream_user_data(s, id);
        (void) fl, (void) ud;
        if (sl && sl->resp_len + len <= sizeof(sl->resp)) {
                memcpy(sl->resp + sl->resp_len, d, len);
                sl->resp_len += len;
        }
        return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
        Slot *sl = nghttp2_session_get_stream_user_data(s, id);
        (void) code, (void) ud;
        if (sl)
                active--;
        if (!sl || kms_now_us() >= t_end_us)
                return 0;
        if (sl->status != 0 || sl->resp_len < 5) {
                failures++;
                next_encrypt(sl);
                return 0;
        }
        if (!sl->decrypting) {
                V2__EncryptResponse *e = v2__encrypt_response__unpack(NULL, sl->resp_len - 5, sl->resp + 5);
                V2__DecryptRequest q = V2__DECRYPT_REQUEST__INIT;
                if (!e) {
                        failures++;
                        next_encrypt(sl);
                        return 0;
                }
                q.ciphertext = e->ciphertext;
                q.key_id = e->key_id;
                q.uid = (char *) "bench";
                sl->decrypting = true;
                submit(sl, "Decrypt", &q.base);
                v2__encrypt_response__free_unpacked(e, NULL);
        } else {
                pairs++;
                next_encrypt(sl);
        }
        return 0;
}

static double bench_plugin(const char *path, unsigned conc) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        nghttp2_session_callbacks *cb;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        uint8_t buf[16384];

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -1;
        nghttp2_session_callbacks_new(&cb);
        nghttp2_session_callbacks_set_on_header_callback(cb, on_hdr);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
        nghttp2_session_client_new(&ses, cb, NULL);
        nghttp2_session_callbacks_del(cb);
        nghttp2_submit_settings(ses, NGHTTP2_FLAG_NONE, NULL, 0);
        uint64_t t0 = kms_now_us();
        t_end_us = t0 + (uint64_t) (secs * 1e6);
        for (unsigned i = 0; i < conc; i++)
                next_encrypt(&slots[i]);
        /* bounded: ends at t_end_us plus the last answers (poll timeout 1 s each, at most 10) */
        for (int idle = 0; idle < 10 && (kms_now_us() < t_end_us || active > 0);) {
                const uint8_t *p;
                ssize_t n;
                while ((n = nghttp2_session_mem_send(ses, &p)) > 0)
                        if (send(fd, p, (size_t) n, MSG_NOSIGNAL) != n)
                                goto out;
                struct pollfd pf = { .fd = fd, .events = POLLIN };
                if (poll(&pf, 1, 1000) <= 0) {
                        idle++;
                        continue;
                }
                n = recv(fd, buf, sizeof(buf), 0);
                if (n <= 0 || nghttp2_session_mem_recv(ses, buf, (size_t) n) < 0)
                        break;
        }
out:;
        double r = (double) pairs / ((double) (kms_now_us() - t0) / 1e6);
        nghttp2_session_del(ses);
        close(fd);
        return r;
}

int main(int argc, char **argv) {
        if (argc != 5) {
                fprintf(stderr, "usage: kms-bench PLUGIN_SOCKET KEY SECONDS CONCURRENCY\n");
                return 2;
        }
        key = argv[2];
        secs = atof(argv[3]);
        unsigned conc = (unsigned) atoi(argv[4]);
        if (conc < 1 || conc > 64 || secs <= 0)
                return 2;
        memset(seed, 0x42, sizeof(seed));
        snprintf(ctx, sizeof(ctx), "kms-v2:%s", key);
        double lk = bench_libkek(conc);
        double pl = bench_plugin(argv[1], conc);
        printf("kekd wrap+unwrap via libkek, %u clients: %.0f/s\n", conc, lk);
        printf("kek-kms-plugin Encrypt+Decrypt, %u streams: %.0f/s (%.2f x libkek), %lu failed calls\n", conc, pl,
               lk > 0 ? pl / lk : 0, failures);
        return lk > 0 && pl > 0 && failures == 0 ? 0 : 1;
}
