#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: the real upstream
# servers (Dovecot, OpenLDAP slapd, Postfix's smtp-sink, etcd for the shared
# store) and the real clients
# (curl, swaks, ldap-utils, python3, msmtp, isync) and HAProxy (PROXY protocol
# tests). Idempotent: packages that are
# already present are not touched. Services are never started by the install; the
# test harness starts its own instances on loopback ports in temp dirs.
set -euo pipefail

pkgs=(
  dovecot-imapd dovecot-submissiond
  slapd ldap-utils libsasl2-modules
  postfix
  etcd-server
  curl swaks libnet-ssleay-perl libio-socket-ssl-perl python3 msmtp isync
  libnginx-mod-mail  # nginx's mail proxy in front of Dovecot (auth_http tests)
  haproxy  # PROXY protocol tests (send-proxy, send-proxy-v2)
  chromium
  nginx  # portal behind a TLS-terminating reverse proxy (private nginx -c FILE -p DIR)
  ca-certificates openssl
  systemd
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi

# Keep package scripts from starting system daemons (postfix, slapd, dovecot):
# the tests run their own instances.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT

export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Stop anything that started despite policy-rc.d (containers without systemd).
for svc in dovecot slapd postfix; do
  pkill -x "$svc" 2>/dev/null || true
done
pkill -f '/usr/lib/postfix/sbin/master' 2>/dev/null || true
