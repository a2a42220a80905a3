# shellcheck shell=bash
# Helpers sourced by scripts/demo and scripts/test. Safe under `set -euo pipefail`.
#
# Environment (all optional):
#   RABBITMQ_MGMT_URL       management API base URL      (default http://127.0.0.1:15672)
#   RABBITMQ_MGMT_USER      management API user          (default guest)
#   RABBITMQ_MGMT_PASSWORD  management API password      (default guest)
#   RABBITMQ_WAIT_SECS      how long to wait for the node and for the API (default 60)
#   FLOWSCOPE_PY_VENV       virtualenv of the Python OTLP client tests (default /var/tmp/flowscope-venv)
#   CARGO_TARGET_DIR        honoured by cargo as usual; never set here

RABBITMQ_MGMT_URL=${RABBITMQ_MGMT_URL:-http://127.0.0.1:15672}
RABBITMQ_MGMT_URL=${RABBITMQ_MGMT_URL%/}
RABBITMQ_MGMT_USER=${RABBITMQ_MGMT_USER:-guest}
RABBITMQ_MGMT_PASSWORD=${RABBITMQ_MGMT_PASSWORD:-guest}
RABBITMQ_WAIT_SECS=${RABBITMQ_WAIT_SECS:-60}

# The RabbitMQ tools live in /usr/sbin, which a non-root PATH may lack.
case ":$PATH:" in
    *:/usr/sbin:*) ;;
    *) PATH="$PATH:/usr/sbin:/sbin" ;;
esac

# Prints `==> msg` to stderr.
log() {
    printf '==> %s\n' "$*" >&2
}

# Prints `error: msg` to stderr and exits 1.
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Runs a command as root: directly when root already, through sudo otherwise.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root and sudo is not installed; run this script as root"
    fi
}

# Installs Debian packages with apt-get.
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found; install $* with your system's package manager"
    log "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# ensure_cmd <cmd> <apt-package>: installs the package when the command is missing.
ensure_cmd() {
    local cmd=$1 package=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    log "$cmd not found"
    apt_install "$package"
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd still not found after installing $package"
}

# Makes sure headless Chromium and its WebDriver (chromedriver) are installed, for
# the browser tests (tests/tests/browser.rs): installs the Debian packages
# chromium and chromium-driver with apt-get when either command is missing.
ensure_chromium() {
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        log "chromium and chromedriver are installed"
        return 0
    fi
    log "chromium or chromedriver not found"
    apt_install chromium chromium-driver
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 ||
        die "chromium or chromedriver still not found after installing chromium and chromium-driver; the browser tests need both"
}

# Checks that cargo exists (adding ~/.cargo/bin to PATH when it is only there).
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found. Install Rust with rustup:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --component rustfmt,clippy
    . \"\$HOME/.cargo/env\""
}

# Checks that rustfmt and clippy are available, adding them with rustup when missing.
ensure_rust_components() {
    local missing=()
    cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v rustup >/dev/null 2>&1 ||
        die "cargo ${missing[*]} not available and rustup not found; install the ${missing[*]} component(s)"
    log "adding rust components: ${missing[*]}"
    rustup component add "${missing[@]}"
}

# Installs cargo-nextest when missing (built outside the project's target dir).
ensure_nextest() {
    cargo nextest --version >/dev/null 2>&1 && return 0
    log "cargo-nextest not found; installing it with cargo install (a few minutes, once)"
    env -u CARGO_TARGET_DIR cargo install cargo-nextest --locked
}

# Prints cargo's target directory for the workspace in the current directory
# (honours CARGO_TARGET_DIR and .cargo/config.toml).
cargo_target_dir() {
    local metadata dir
    metadata=$(cargo metadata --format-version 1 --no-deps) ||
        die "cargo metadata failed; run this from the flowscope repository"
    dir=$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$metadata")
    [[ -n $dir ]] || die "cargo metadata did not report a target_directory"
    printf '%s\n' "$dir"
}

# HTTP status of GET <mgmt>/api/overview with the configured credentials ("000" when nothing answers).
rabbitmq_mgmt_status() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        -u "$RABBITMQ_MGMT_USER:$RABBITMQ_MGMT_PASSWORD" \
        "$RABBITMQ_MGMT_URL/api/overview" || true
}

# True when the local RabbitMQ node answers `rabbitmqctl status`.
rabbitmq_node_running() {
    as_root timeout 30 rabbitmqctl status >/dev/null 2>&1
}

# True when rabbitmq_management is enabled (explicitly or implicitly).
rabbitmq_mgmt_enabled() {
    local enabled
    enabled=$(as_root timeout 60 rabbitmq-plugins -q list -e -m 2>/dev/null) || return 1
    grep -qx 'rabbitmq_management' <<<"$enabled"
}

# Makes sure a RabbitMQ node with the management plugin answers at
# $RABBITMQ_MGMT_URL: installs rabbitmq-server with apt when missing, starts the
# node when it is down, enables the management plugin when it is off, then waits
# for the management API. Steps already done are skipped.
ensure_rabbitmq() {
    ensure_cmd curl curl

    local status
    status=$(rabbitmq_mgmt_status)
    if [[ $status == 200 ]]; then
        log "RabbitMQ management API answers at $RABBITMQ_MGMT_URL"
        return 0
    fi

    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        log "rabbitmq-server not installed"
        apt_install rabbitmq-server
    fi

    if rabbitmq_node_running; then
        log "RabbitMQ node is running"
    else
        log "starting RabbitMQ (rabbitmq-server -detached)"
        as_root rabbitmq-server -detached
        local start_deadline=$((SECONDS + RABBITMQ_WAIT_SECS))
        until rabbitmq_node_running; do
            ((SECONDS < start_deadline)) ||
                die "RabbitMQ did not start within ${RABBITMQ_WAIT_SECS}s; see /var/log/rabbitmq/ and 'rabbitmqctl status'"
            sleep 2
        done
        log "RabbitMQ node is running"
    fi

    if rabbitmq_mgmt_enabled; then
        log "management plugin is enabled"
    else
        log "enabling the management plugin (rabbitmq-plugins enable rabbitmq_management)"
        as_root rabbitmq-plugins enable rabbitmq_management >/dev/null
    fi

    log "waiting for the management API at $RABBITMQ_MGMT_URL"
    local api_deadline=$((SECONDS + RABBITMQ_WAIT_SECS))
    while :; do
        status=$(rabbitmq_mgmt_status)
        case $status in
            200)
                log "RabbitMQ management API answers at $RABBITMQ_MGMT_URL"
                return 0
                ;;
            401 | 403)
                die "the management API at $RABBITMQ_MGMT_URL refused user '$RABBITMQ_MGMT_USER' (HTTP $status); set RABBITMQ_MGMT_USER and RABBITMQ_MGMT_PASSWORD"
                ;;
            *) ;; # not up yet: keep polling
        esac
        ((SECONDS < api_deadline)) ||
            die "the management API at $RABBITMQ_MGMT_URL did not answer within ${RABBITMQ_WAIT_SECS}s (last HTTP status $status); check 'rabbitmq-plugins list -e' and /var/log/rabbitmq/"
        sleep 1
    done
}

# Makes sure the Python virtualenv the OTLP client tests run (the Python
# OpenTelemetry SDK with its gRPC and HTTP exporters) exists at
# ${FLOWSCOPE_PY_VENV:-/var/tmp/flowscope-venv}: creates it with `python3 -m venv`
# (installing python3-venv with apt when that fails) and installs the SDK only
# when the exporter cannot be imported yet.
ensure_python_venv() {
    local venv=${FLOWSCOPE_PY_VENV:-/var/tmp/flowscope-venv}
    ensure_cmd python3 python3
    if [[ ! -x $venv/bin/python ]]; then
        log "creating the Python virtualenv $venv"
        if ! python3 -m venv "$venv"; then
            rm -rf "$venv"
            apt_install python3-venv
            python3 -m venv "$venv" || die "python3 -m venv $venv failed even with python3-venv installed"
        fi
    fi
    if "$venv/bin/python" -c 'import opentelemetry.exporter.otlp.proto.grpc' >/dev/null 2>&1; then
        log "the OpenTelemetry Python SDK is installed in $venv"
        return 0
    fi
    log "installing opentelemetry-sdk and opentelemetry-exporter-otlp into $venv"
    "$venv/bin/python" -m pip install -q opentelemetry-sdk opentelemetry-exporter-otlp ||
        die "pip could not install the OpenTelemetry Python SDK into $venv; check access to PyPI"
}
