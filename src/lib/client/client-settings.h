/* SPDX-License-Identifier: Apache-2.0 */
/*
 * How a client finds its node: URL, actor and node secret file, each with the place it came
 * from, resolved as  environment > config.toml > default:
 *   url       $NUCLEUS_NODE_URL      [node] url                   http://127.0.0.1:8080
 *   actor     $NUCLEUS_NODE_ACTOR    [node] actor                 nucleus-cli
 *   key file  $NUCLEUS_NODE_KEY_FILE [auth] secrets_dir/node.key  <secrets dir>/node.key
 * config.toml is read with src/lib/spec's loader (docs/config.md; unknown keys are errors).
 * The secret itself never travels in the environment or on a command line: only its path.
 * Used by the CLI, `nucleus run` and nucleus-mcp, so they all talk to the same node.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "client.h"

typedef struct ClientSettings {
        char *config_file; /* the CLI config consulted (may not exist) */
        bool config_found; /* it existed and was read */
        char *url;
        const char *url_source; /* static: "$NUCLEUS_NODE_URL", "config.toml [node] url", "default" */
        char *actor;
        const char *actor_source;
        char *key_file;
        const char *key_file_source;
        char *secrets_dir; /* [auth] secrets_dir, or the default secrets dir */
        const char *secrets_dir_source;
        char *vm_name;       /* [vm] name (Lima), default "nucleus" */
        json_t *config_json; /* the loader's {"key": {"value","source","line"}} view, or NULL */
} ClientSettings;

void client_settings_done(ClientSettings *s);

/*
 * client_settings_load:
 *   Resolves the settings above. A config file that exists but does not parse, or an explicit
 *   one (nucleus -c) that does not exist, is an error.
 *   Returns: 0, or a negative errno with *reterr (malloc'd) naming file, line and problem.
 */
int client_settings_load(ClientSettings *ret, char **reterr);

/*
 * client_load_key_file:
 *   Reads a node secret file (64 hex characters and a newline; 0600, owned by us).
 *   Returns: 0 and the 32 raw bytes, or -ENOENT/-EPERM/-EINVAL with *reterr naming the file
 *   and the fix. The buffer is the caller's to wipe.
 */
int client_load_key_file(const char *path, uint8_t key[static CLIENT_KEY_SIZE], char **reterr);

/* Settings + key -> a ready client. Returns 0 or a negative errno with *reterr. */
int client_open(const ClientSettings *s, NucleusClient **ret, char **reterr);
/* client_settings_load() + client_open(). */
int client_open_default(NucleusClient **ret, char **reterr);
