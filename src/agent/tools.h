/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tool table offered to models (agent loop) and MCP clients (nucleus-mcp): one entry per
 * proxy operation an agent may call, with a description and a JSON Schema for its arguments.
 * Which entries are offered is decided by the caller from the operations the pod's policy
 * grants; host-only operations (approve, charge, import, export, configure) are never offered,
 * so an agent cannot approve its own calls or move money.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

typedef struct AgentToolDef {
        const char *name;        /* proxy operation and tool name */
        const char *description; /* for the model */
        const char *schema;      /* JSON Schema (object) for the arguments, as JSON text */
} AgentToolDef;

/* The definition for an agent-facing operation, or NULL (unknown or host-only). */
const AgentToolDef *agent_tool_find(const char *name);

/* All agent-facing definitions, in a fixed order; *ret_n gets the count. */
const AgentToolDef *agent_tool_table(size_t *ret_n);

/* Tools for the granted operations, in the table's order, as the neutral array
 * [{"name","description","input_schema"}]. Unknown and host-only names are skipped.
 * ops is a NULL-terminated list (NULL: none). Returns a new reference, never NULL. */
json_t *agent_tools_for_ops(char *const *ops);

/* Checks args against a tool's schema: an object, required keys present, no unknown keys,
 * and each value of the declared JSON type. Returns 0 or -EINVAL with *reterr (malloc'd)
 * naming the key and problem. Used by nucleus-mcp before anything reaches the node. */
int agent_tool_check_args(const AgentToolDef *def, json_t *args, char **reterr);
