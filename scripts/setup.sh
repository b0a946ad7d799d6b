#!/usr/bin/env bash
# Installs what ccorch needs on a Debian-like machine and builds it into ./.venv.
#   scripts/setup.sh release   optimized extension (LTO), for running and benchmarks
#   scripts/setup.sh dev       quick build, for tests
# Safe to run again: each step skips what is already there.
set -euo pipefail
profile="${1:-release}"
cd "$(dirname "$0")/.."

# Debian packages the platform and its tests use. Installed only when missing.
# python3-venv for .venv; sip-tester (SIPp) is the real SIP and RTP peer of the tests;
# baresip-core and linphone-cli are the real softphones that register and answer in them;
# espeak-ng speaks the IVR's text prompts; curl and jq run the README's API examples;
# sipvicious is the scanner the abuse tests attack the node with.
# pocketsphinx-testdata carries the telephone-band digits model of the IVR's recognize node;
# flite's voices speak the digits the tests and the accuracy bench say to it.
# chromium is the real browser the web app's tests drive (without the recommended extras);
# nodejs and npm build the app, from Debian when the machine has no npm of its own.
apt_packages=(python3-venv sip-tester baresip-core linphone-cli espeak-ng curl jq sipvicious
  pocketsphinx-testdata flite)
lean_packages=(chromium fonts-wqy-zenhei)  # a CJK font: the Chinese screens are readable
# cmake builds the C libraries the media engine links: libopus (Opus for browsers), aws-lc
lean_packages+=(cmake)
# prometheus (with promtool) checks dashboards/ against a running node in the tests
lean_packages+=(prometheus)
command -v npm >/dev/null 2>&1 || lean_packages+=(nodejs npm)
# Java runs the tests' mail server (GreenMail), when the machine has none of its own
command -v java >/dev/null 2>&1 || lean_packages+=(default-jre-headless)
# apt_install [apt-get options] -- packages: those not installed yet
apt_install() {
  local opts=() missing=() p
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "setup: installing Debian packages: ${missing[*]}"
  local sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${opts[@]}" "${missing[@]}" >/dev/null
}
apt_install -- "${apt_packages[@]}"
apt_install --no-install-recommends -- "${lean_packages[@]}"

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: Rust is needed (1.85 or newer): install it with rustup (https://rustup.rs), then run this again." >&2
    exit 1
  fi
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock

echo "setup: building ccorch._core ($profile)"
# maturin installs into the environment named by VIRTUAL_ENV: make it this checkout's own,
# whatever environment the caller happens to have activated.
export VIRTUAL_ENV="$PWD/.venv"
unset CONDA_PREFIX
# Builds the extension into ccorch/ and installs the package editable (console script
# `ccorch`); its dependencies are already satisfied by the lock file above.
if [ "$profile" = "release" ]; then
  .venv/bin/maturin develop -q --release
else
  .venv/bin/maturin develop -q --profile dev
fi

# The browser app: its pinned packages (web/package-lock.json), then the build into
# ccorch/web/dist, which the node serves at / and the wheel ships.
echo "setup: building the web app"
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run -s build >/dev/null)
# The tests' SMSC (the npm smpp package's server, tests/smsc): its pinned packages.
(cd tests/smsc && npm ci --no-audit --no-fund --loglevel=error)
# The tests' mail server: GreenMail standalone (SMTP and IMAP in one Java process), from
# Maven Central, checked against its pinned digest.
greenmail=.cache/greenmail-standalone-2.1.3.jar
if [ ! -f "$greenmail" ]; then
  echo "setup: fetching GreenMail"
  mkdir -p .cache
  curl -fsSL -o "$greenmail.part" \
    https://repo1.maven.org/maven2/com/icegreen/greenmail-standalone/2.1.3/greenmail-standalone-2.1.3.jar
  echo "9457fdaf45ded6c87bf84a321a5ced4b4b5e72b1d03686b778df381378afc4c8  $greenmail.part" | sha256sum -c --quiet
  mv "$greenmail.part" "$greenmail"
fi
