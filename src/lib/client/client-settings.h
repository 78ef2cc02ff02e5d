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

/* A scoped credential (docs/api.md "Scoped credentials"), as minted by
 * POST /v1/pods/{id}/credentials: the answer saved as a file. */
typedef struct ClientCredential {
        char key_id[81];
        uint8_t secret[CLIENT_KEY_SIZE];
        char pod[37];  /* the pod it is for */
        char scope[8]; /* "pod" or "run" */
} ClientCredential;

/*
 * client_load_credential_file:
 *   Reads a credential file: the JSON object {"key_id", "secret" (64 hex), "pod", "scope"}
 *   (other members ignored), a regular file owned by us that no other user can read (0600).
 *   The secret is only ever read from a file (or an inherited descriptor, path /dev/fd/N),
 *   never from argv or an environment value.
 *   Returns: 0, or -ENOENT/-EPERM/-EINVAL with *reterr naming the file and the problem. The
 *   caller wipes *ret (explicit_bzero) when done.
 */
int client_load_credential_file(const char *path, ClientCredential *ret, char **reterr);

/* Settings (URL, actor) + a credential -> a client that signs with the credential. */
int client_open_scoped(const ClientSettings *s, const ClientCredential *cred, NucleusClient **ret, char **reterr);

/* Settings + key -> a ready client. Returns 0 or a negative errno with *reterr. */
int client_open(const ClientSettings *s, NucleusClient **ret, char **reterr);
/* client_settings_load() + client_open(). */
int client_open_default(NucleusClient **ret, char **reterr);
