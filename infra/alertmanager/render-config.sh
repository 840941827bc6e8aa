#!/bin/sh
# Render alertmanager.yml.tmpl from the environment, then (optionally) exec Alertmanager on the result.
#
#   render-config.sh TEMPLATE OUTPUT [COMMAND [ARGS...]]
#
# Alertmanager does not expand environment variables in its config, so this runs first, in the Alertmanager image
# itself (busybox sh + sed: POSIX only, no envsubst). Secrets stay in files that Alertmanager reads itself
# (*_file settings); only the non-secret settings below come from the environment:
#
#   ALERTMANAGER_SECRETS_DIR        where the secret files are (/etc/alertmanager/secrets)
#                                     slack_webhook_url      Slack incoming-webhook URL   -> Slack enabled
#                                     pagerduty_routing_key  PagerDuty Events v2 key      -> PagerDuty enabled
#                                     smtp_password          SMTP password (optional)     -> SMTP AUTH
#   ALERTMANAGER_SLACK_CHANNEL      Slack channel (#camcount-alerts)
#   ALERTMANAGER_EMAIL_TO           recipients of warning mail; with ALERTMANAGER_SMTP_SMARTHOST -> email enabled
#   ALERTMANAGER_EMAIL_FROM         sender (alertmanager@camcount.local)
#   ALERTMANAGER_SMTP_SMARTHOST     host:port of the SMTP relay
#   ALERTMANAGER_SMTP_USERNAME      SMTP AUTH user (used when smtp_password exists)
#   ALERTMANAGER_SMTP_REQUIRE_TLS   true | false (true)
#
# It prints one line per integration (enabled, or why not) and exits non-zero on an unusable value.
set -eu

if [ "$#" -lt 2 ]; then
    echo "usage: $0 TEMPLATE OUTPUT [COMMAND [ARGS...]]" >&2
    exit 2
fi
template=$1
output=$2
shift 2

: "${ALERTMANAGER_SECRETS_DIR:=/etc/alertmanager/secrets}"
: "${ALERTMANAGER_SLACK_CHANNEL:=#camcount-alerts}"
: "${ALERTMANAGER_EMAIL_TO:=}"
: "${ALERTMANAGER_EMAIL_FROM:=alertmanager@camcount.local}"
: "${ALERTMANAGER_SMTP_SMARTHOST:=}"
: "${ALERTMANAGER_SMTP_USERNAME:=}"
: "${ALERTMANAGER_SMTP_REQUIRE_TLS:=true}"

say() { echo "alertmanager config: $*" >&2; }
fail() { say "$*"; exit 1; }

case "$ALERTMANAGER_SMTP_REQUIRE_TLS" in
    true|false) ;;
    *) fail "ALERTMANAGER_SMTP_REQUIRE_TLS must be true or false, not '$ALERTMANAGER_SMTP_REQUIRE_TLS'" ;;
esac
if [ -n "$ALERTMANAGER_SMTP_SMARTHOST" ]; then
    case "$ALERTMANAGER_SMTP_SMARTHOST" in
        *:[0-9]*) ;;
        *) fail "ALERTMANAGER_SMTP_SMARTHOST must be host:port, not '$ALERTMANAGER_SMTP_SMARTHOST'" ;;
    esac
fi

tmp="$output.tmp.$$"
script="$output.sed.$$"
trap 'rm -f "$tmp" "$script"' EXIT
: > "$script"  # one sed script: no shell quoting of values on the way

secret() { [ -s "$ALERTMANAGER_SECRETS_DIR/$1" ]; }
block() {  # block NAME yes|no WHY: keep or drop the lines from "# begin NAME" to "# end NAME"
    if [ "$2" = yes ]; then
        say "$1 enabled"
    else
        say "$1 disabled ($3)"
        printf '/# begin %s$/,/# end %s$/d\n' "$1" "$1" >> "$script"
    fi
}

if secret pagerduty_routing_key; then on=yes; else on=no; fi
block pagerduty "$on" "no $ALERTMANAGER_SECRETS_DIR/pagerduty_routing_key"
if secret slack_webhook_url; then on=yes; else on=no; fi
block slack "$on" "no $ALERTMANAGER_SECRETS_DIR/slack_webhook_url"
if [ -n "$ALERTMANAGER_EMAIL_TO" ] && [ -n "$ALERTMANAGER_SMTP_SMARTHOST" ]; then on=yes; else on=no; fi
block email "$on" "ALERTMANAGER_EMAIL_TO and ALERTMANAGER_SMTP_SMARTHOST not both set"
if secret smtp_password; then on=yes; else on=no; fi
block smtp-auth "$on" "no $ALERTMANAGER_SECRETS_DIR/smtp_password: unauthenticated relay"

# Values go into single-quoted YAML scalars: a quote is doubled; for sed, \ & and the | delimiter are escaped.
# A value with a line break could add YAML keys, so it is refused.
for name in ALERTMANAGER_SECRETS_DIR ALERTMANAGER_SLACK_CHANNEL ALERTMANAGER_EMAIL_TO ALERTMANAGER_EMAIL_FROM \
            ALERTMANAGER_SMTP_SMARTHOST ALERTMANAGER_SMTP_USERNAME ALERTMANAGER_SMTP_REQUIRE_TLS; do
    eval "value=\${$name}"  # name is one of the literals above
    case "$value" in
        *"
"*) fail "$name holds a line break" ;;
    esac
    escaped=$(printf '%s\n' "$value" | sed -e "s/'/''/g" -e 's/[\\&|]/\\&/g')
    printf 's|\\${%s}|%s|g\n' "$name" "$escaped" >> "$script"
done

sed -f "$script" "$template" > "$tmp"
if grep -n '\${ALERTMANAGER_[A-Z_]*}' "$tmp" >&2; then
    fail "the placeholders above are not known to $0"
fi
mv "$tmp" "$output"
say "rendered $template -> $output"

rm -f "$script"
trap - EXIT
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
