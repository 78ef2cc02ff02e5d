/* SPDX-License-Identifier: Apache-2.0 */
/* What setup's Linux path (verb-setup.c) and its Lima path (cli-lima.c) share; cli-setup.c. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "cli.h"

typedef enum SetupStepResult {
        SETUP_UNCHANGED,
        SETUP_CHANGED,
        SETUP_SKIPPED,
        SETUP_WARNING,
        SETUP_FAILED,
} SetupStepResult;

typedef struct SetupContext {
        /* options */
        bool force;
        bool rotate_secrets;
        bool skip_vm;
        bool skip_images;
        bool skip_deps;
        bool secrets_provided;      /* inside Lima: secrets were handed over, only verify them */
        const char *listen;         /* node API, "127.0.0.1:8080" */
        const char *metrics_listen; /* "127.0.0.1:9080" */
        bool listen_given;          /* --listen / --metrics-listen were on the command line: */
        bool metrics_listen_given;  /* otherwise an existing node.toml's addresses are kept */
        const char *vm_name;
        unsigned vm_cpus, vm_memory_gib, vm_disk_gib; /* flag > config.toml [vm] > default */
        bool vm_given;                                /* a --vm-* flag was on the command line */
        int pool_size; /* --pool-size N: [pool.images] default in node.toml; -1: by the host's RAM */
        OutputMode output;
        /* results */
        json_t *steps; /* array of {step, result, message} */
        unsigned n_changed;
        unsigned n_failed;
        char *accel; /* "kvm" or "tcg" */
        char *accel_reason;
} SetupContext;

/* Record and print (stderr) one step's outcome. */
void setup_step(SetupContext *ctx, const char *step, SetupStepResult res, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Secrets step (the store of src/lib/auth), shared with the Lima path (host-side secrets). Returns 0 or a
 * negative errno (already recorded as a failed step). */
int setup_secrets(SetupContext *ctx, const char *secrets_dir);

/* Record the outcome of writing a config file (cli_write_if_changed's result r). */
void setup_report_write(SetupContext *ctx, const char *step, const char *path, int r);

/* Write the CLI config.toml: the node URL and the secrets dir. */
int setup_cli_config(SetupContext *ctx, const char *url, const char *secrets_dir);
