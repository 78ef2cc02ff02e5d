/* SPDX-License-Identifier: Apache-2.0 */
/*
 * YAML to a jansson tree with source positions (libyaml event API). Untrusted input; a strict
 * subset: one document, no anchors/aliases, no explicit tags, no merge keys, scalar keys only,
 * duplicate keys rejected, depth/size capped. Plain scalars resolve per the YAML 1.2 core
 * schema (null, true/false, decimal int, float); quoted scalars are always strings.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "spec-pos.h"

#define SPEC_YAML_MAX_SIZE (1024U * 1024U)
#define SPEC_YAML_MAX_DEPTH 32U
#define SPEC_YAML_MAX_NODES 100000U

/* Returns 0 and *ret, or -EBADMSG/-EFBIG with *reterr "FILE:LINE:COL: message". pos optional. */
int spec_yaml_to_json(
        const char *text, size_t n, const char *filename, json_t **ret, SpecPosTable *pos, char **reterr);
