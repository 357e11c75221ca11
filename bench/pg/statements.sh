#!/usr/bin/env bash
# Replays a user's leave as confab sends it to PostgreSQL (the statements
# of `SqlTx::lock_chat_for`, `close_membership` and `append_event`, taken
# from `log_statement = 'all'`) with pgbench, prepared, 16 clients, on a
# fresh copy of a database that confab provisioned, so that variants of
# the SQL can be compared without building confab. Usage:
#
#   bench/pg/statements.sh ADMIN_URL TEMPLATE_DB [SCRIPT] [TRANSACTIONS_PER_CLIENT]
#
# TEMPLATE_DB: a database on that server holding one tenant (id 1) with
# 10,000 group chats of 20 members (user ids 1-20) and no leaves yet, e.g.
#
#   createdb w1
#   confab serve --listen 127.0.0.1:18937 --admin-token bt --database-url postgres://…/w1 &
#   confab-bench load --base http://127.0.0.1:18937 --admin-token bt --tenant t1 --requests 0
#   kill %1
#
# SCRIPT defaults to bench/pg/leave-statements.sql. Each run copies the
# template (CREATE DATABASE … TEMPLATE), so runs start alike.
set -euo pipefail
admin=${1:?usage: bench/pg/statements.sh ADMIN_URL TEMPLATE_DB [SCRIPT] [TRANSACTIONS_PER_CLIENT]}
template=${2:?usage: bench/pg/statements.sh ADMIN_URL TEMPLATE_DB [SCRIPT] [TRANSACTIONS_PER_CLIENT]}
here=$(cd "$(dirname "$0")" && pwd)
script=${3:-$here/leave-statements.sql}
per_client=${4:-1250}
copy=confab_statements
db_url=$(echo "$admin" | sed -E "s|/[^/?]*(\?.*)?$|/$copy\1|")
psql "$admin" -qc "DROP DATABASE IF EXISTS $copy" -c "CREATE DATABASE $copy TEMPLATE $template"
psql "$db_url" -qc "ANALYZE"
pgbench -n -M prepared -c 16 -j 2 -t "$per_client" -f "$script" "$db_url" 2>&1 | grep -E "tps|latency|number of transactions actually|error"
psql "$admin" -qc "DROP DATABASE $copy"
