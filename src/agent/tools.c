/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tool definitions for the proxy operations an agent may call; see tools.h. Argument names
 * follow the proxy's request JSON (docs/proxy.md) so arguments pass through unchanged.
 */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "string-util.h"
#include "tools.h"

static const AgentToolDef tool_table[] = {
        {
                "read",
                "Read a file in the workspace (/workspace). Paths are relative to the workspace root. "
                "Returns the contents; use offset and length (bytes) for large files.",
                "{\"type\":\"object\",\"properties\":{"
                "\"path\":{\"type\":\"string\",\"description\":\"file path relative to the workspace\"},"
                "\"offset\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"byte offset to start "
                "at\"},"
                "\"length\":{\"type\":\"integer\",\"minimum\":0,\"description\":\"maximum bytes to "
                "return\"}},"
                "\"required\":[\"path\"],\"additionalProperties\":false}",
        },
        {
                "write",
                "Create or replace a file in the workspace with the given content.",
                "{\"type\":\"object\",\"properties\":{"
                "\"path\":{\"type\":\"string\",\"description\":\"file path relative to the workspace\"},"
                "\"content\":{\"type\":\"string\",\"description\":\"the complete new content\"},"
                "\"create_dirs\":{\"type\":\"boolean\",\"description\":\"create missing parent "
                "directories\"}},"
                "\"required\":[\"path\",\"content\"],\"additionalProperties\":false}",
        },
        {
                "edit",
                "Replace one exact, unique occurrence of the text old with new in a workspace file. "
                "Fails with not_found when old is absent and not_unique when it occurs more than once "
                "(include surrounding lines to make it unique).",
                "{\"type\":\"object\",\"properties\":{"
                "\"path\":{\"type\":\"string\",\"description\":\"file path relative to the workspace\"},"
                "\"old\":{\"type\":\"string\",\"description\":\"exact text to replace\"},"
                "\"new\":{\"type\":\"string\",\"description\":\"replacement text\"}},"
                "\"required\":[\"path\",\"old\",\"new\"],\"additionalProperties\":false}",
        },
        {
                "list",
                "List the entries of a directory in the workspace (name, type, size).",
                "{\"type\":\"object\",\"properties\":{"
                "\"path\":{\"type\":\"string\",\"description\":\"directory relative to the workspace; "
                "default the root\"}},"
                "\"additionalProperties\":false}",
        },
        {
                "glob",
                "Find workspace files whose paths match a glob pattern such as src/**/*.c.",
                "{\"type\":\"object\",\"properties\":{"
                "\"pattern\":{\"type\":\"string\",\"description\":\"glob pattern, relative to the "
                "workspace\"},"
                "\"path\":{\"type\":\"string\",\"description\":\"directory to search; default the root\"}},"
                "\"required\":[\"pattern\"],\"additionalProperties\":false}",
        },
        {
                "grep",
                "Search workspace files for a regular expression (PCRE2). Returns matching lines with "
                "file names and line numbers.",
                "{\"type\":\"object\",\"properties\":{"
                "\"pattern\":{\"type\":\"string\",\"description\":\"regular expression\"},"
                "\"path\":{\"type\":\"string\",\"description\":\"file or directory to search; default the "
                "root\"},"
                "\"ignore_case\":{\"type\":\"boolean\"},"
                "\"max_matches\":{\"type\":\"integer\",\"minimum\":1}},"
                "\"required\":[\"pattern\"],\"additionalProperties\":false}",
        },
        {
                "run",
                "Run a command inside the sandbox VM, in the workspace, as an unprivileged user. Give "
                "argv as an array (no shell); a shell command string is accepted only when the policy "
                "grants a shell. Returns exit status, stdout and stderr.",
                "{\"type\":\"object\",\"properties\":{"
                "\"argv\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1,"
                "\"description\":\"program and arguments\"},"
                "\"command\":{\"type\":\"string\",\"description\":\"shell command (only with a shell "
                "grant)\"},"
                "\"cwd\":{\"type\":\"string\",\"description\":\"working directory relative to the "
                "workspace\"},"
                "\"stdin\":{\"type\":\"string\"},"
                "\"timeout_seconds\":{\"type\":\"integer\",\"minimum\":1}},"
                "\"additionalProperties\":false}",
        },
        {
                "web_fetch",
                "Fetch a URL (only hosts the policy allows). Returns status, headers and body.",
                "{\"type\":\"object\",\"properties\":{"
                "\"url\":{\"type\":\"string\"},"
                "\"method\":{\"type\":\"string\",\"enum\":[\"GET\",\"HEAD\",\"POST\"]},"
                "\"headers\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}},"
                "\"body\":{\"type\":\"string\"}},"
                "\"required\":[\"url\"],\"additionalProperties\":false}",
        },
        {
                "status",
                "Show the sandbox's policy hash, budget used and left, and the deadline.",
                "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}",
        },
};

const AgentToolDef *agent_tool_table(size_t *ret_n) {
        *ret_n = ELEMENTSOF(tool_table);
        return tool_table;
}

const AgentToolDef *agent_tool_find(const char *name) {
        if (!name)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(tool_table); i++)
                if (streq(tool_table[i].name, name))
                        return &tool_table[i];
        return NULL;
}

json_t *agent_tools_for_ops(char *const *ops) {
        json_t *a = json_array();
        for (size_t i = 0; i < ELEMENTSOF(tool_table); i++) {
                if (!strv_contains(ops, tool_table[i].name))
                        continue;
                json_t *schema = json_loads(tool_table[i].schema, JSON_REJECT_DUPLICATES, NULL);
                assert(schema); /* compiled-in text */
                json_array_append_new(
                        a,
                        json_pack(
                                "{s:s, s:s, s:o}",
                                "name",
                                tool_table[i].name,
                                "description",
                                tool_table[i].description,
                                "input_schema",
                                schema));
        }
        return a;
}

static bool type_matches(const char *type, json_t *v) {
        if (streq(type, "string"))
                return json_is_string(v);
        if (streq(type, "integer"))
                return json_is_integer(v);
        if (streq(type, "boolean"))
                return json_is_boolean(v);
        if (streq_ptr(type, "array"))
                return json_is_array(v);
        if (streq(type, "object"))
                return json_is_object(v);
        if (streq(type, "number"))
                return json_is_number(v);
        return false;
}

int agent_tool_check_args(const AgentToolDef *def, json_t *args, char **reterr) {
        _cleanup_json_ json_t *schema = json_loads(def->schema, JSON_REJECT_DUPLICATES, NULL);
        json_t *props = json_object_get(schema, "properties"), *v, *req;
        const char *key;
        size_t i;

        if (!json_is_object(args)) {
                *reterr = xasprintf("%s: arguments must be a JSON object", def->name);
                return -EINVAL;
        }
        json_array_foreach(json_object_get(schema, "required"), i, req)
                if (!json_object_get(args, json_string_value(req))) {
                        *reterr = xasprintf(
                                "%s: missing required argument \"%s\"", def->name, json_string_value(req));
                        return -EINVAL;
                }
        json_object_foreach(args, key, v) {
                json_t *p = json_object_get(props, key);
                if (!p) {
                        _cleanup_free_ char *vis = string_make_visible(key);
                        *reterr = xasprintf("%s: unknown argument \"%s\"", def->name, vis);
                        return -EINVAL;
                }
                const char *type = json_string_value(json_object_get(p, "type"));
                if (type && !type_matches(type, v)) {
                        *reterr = xasprintf("%s: argument \"%s\" must be of type %s", def->name, key, type);
                        return -EINVAL;
                }
                if (streq_ptr(type, "array")) {
                        const char *it = json_string_value(
                                json_object_get(json_object_get(p, "items"), "type"));
                        json_t *e;
                        size_t k;
                        json_array_foreach(v, k, e)
                                if (it && !type_matches(it, e)) {
                                        *reterr = xasprintf(
                                                "%s: argument \"%s\"[%zu] must be of type %s",
                                                def->name,
                                                key,
                                                k,
                                                it);
                                        return -EINVAL;
                                }
                }
                if (streq_ptr(type, "integer")) {
                        json_t *min = json_object_get(p, "minimum");
                        if (json_is_integer(min) && json_integer_value(v) < json_integer_value(min)) {
                                *reterr = xasprintf(
                                        "%s: argument \"%s\" must be >= %lld",
                                        def->name,
                                        key,
                                        (long long) json_integer_value(min));
                                return -EINVAL;
                        }
                }
        }
        return 0;
}
