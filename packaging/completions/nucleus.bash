# SPDX-License-Identifier: Apache-2.0
# bash completion for nucleus (install to /usr/share/bash-completion/completions/nucleus)

_nucleus() {
        local cur prev verb i
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        local verbs="setup start stop doctor profiles config secrets ps logs rm prune audit run image create wait upload tool approve credential approvals console patch snapshot fork delete cancel help"
        local global="-c --config -v --verbose -q --quiet -h --help --version"

        verb=
        for ((i = 1; i < COMP_CWORD; i++)); do
                case ${COMP_WORDS[i]} in
                -c|--config) ((i++)) ;;
                -*) ;;
                *) verb=${COMP_WORDS[i]}; break ;;
                esac
        done

        case $prev in
        -c|--config|--public-key|-f|--file|-o|--out) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -d|--dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --state) COMPREPLY=($(compgen -W "pending booting configuring running stopping exited failed" -- "$cur")); return ;;
        --arg|--arg-json) return ;;
        --output) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
        --listen|--metrics-listen|--timeout|--tail|--vm-name|--vm-cpus|--vm-memory-gib|--vm-disk-gib|--pool-size|--older-than) return ;;
        --max-cost|--network|--max-turns|--model|--base-url|--api-key-env|--price-in|--price-out|--agent-cmd) return ;;
        --provider) COMPREPLY=($(compgen -W "openai anthropic" -- "$cur")); return ;;
        --agent) COMPREPLY=($(compgen -W "claude codex mcp" -- "$cur")); return ;;
        -p|--profile) COMPREPLY=($(compgen -W "$(nucleus profiles --output json 2>/dev/null | sed -n 's/.*"name": "\([^"]*\)".*/\1/p')" -- "$cur")); return ;;
        --script|--patch-out|--audit-out) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        esac

        if [[ -z $verb ]]; then
                COMPREPLY=($(compgen -W "$verbs $global" -- "$cur"))
                return
        fi

        local opts="-h --help"
        case $verb in
        setup) opts+=" --force --rotate-secrets --skip-vm --skip-images --skip-deps --listen --metrics-listen --vm-name --vm-cpus --vm-memory-gib --vm-disk-gib --pool-size --output" ;;
        start) opts+=" --no-wait --timeout --output" ;;
        stop) opts+=" --stop-vm --force --output" ;;
        doctor|config) opts+=" --output" ;;
        profiles) opts+=" --output show export -c --config --format -o --out" ;;
        ps) opts+=" -a --all --state --output" ;;
        rm) opts+=" -f --force --output" ;;
        prune) opts+=" --older-than --output" ;;
        secrets) opts+=" --output rotate show-paths node approver audit all" ;;
        logs) opts+=" -f --follow --tail --events --output" ;;
        audit)
                opts+=" --public-key --allow-unsealed --output verify show"
                if [[ ${COMP_WORDS[COMP_CWORD-1]} == verify || ${COMP_WORDS[COMP_CWORD-1]} == show ]]; then
                        COMPREPLY=($(compgen -f -- "$cur"))
                        return
                fi ;;
        run) opts+=" -d --dir -p --profile -c --config --max-cost --timeout --network --max-turns --model --provider --base-url --api-key-env --price-in --price-out --script --agent --agent-cmd --patch-out --audit-out --apply --apply-flagged --include-untracked-binaries --allow-command --history --image --name --scratch-mib --setup --setup-host --output" ;;
        image) opts+=" --output" ;;
        create) opts+=" -f --file --wait --timeout --output" ;;
        wait) opts+=" --state --timeout --output" ;;
        upload) opts+=" -d --dir --output" ;;
        patch) opts+=" -o --out -d --dir --output" ;;
        tool) opts+=" --arg --arg-json --output read write edit list glob grep run status web_fetch charge" ;;
        approve|delete|cancel) opts+=" --output" ;;
        credential) opts+=" --out --scope --output" ;;
        snapshot) opts+=" --list --output" ;;
        fork) opts+=" -n --count --snapshot --output" ;;
        approvals) opts+=" --for-pod --reason --output list approve refuse serve" ;;
        console) opts+=" --listen --output" ;;
        esac
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _nucleus nucleus
