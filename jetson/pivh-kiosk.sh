#!/usr/bin/env bash
# Open the pivh-live display full screen (Chromium kiosk) once the analyser answers.
# Usage: pivh-kiosk.sh [URL]            default URL: http://127.0.0.1:8765/
# PIVH_KIOSK_WAIT     seconds to wait for the analyser before opening anyway (default 180)
# PIVH_KIOSK_BROWSER  browser command (default: the first of chromium, chromium-browser,
#                     /snap/bin/chromium, google-chrome found)
# Started by jetson/pivh-live-kiosk.service; see docs/jetson.md ("Kiosk").
set -euo pipefail

url="${1:-http://127.0.0.1:8765/}"
wait_s="${PIVH_KIOSK_WAIT:-180}"

hostport="${url#*://}"
hostport="${hostport%%/*}"
host="${hostport%:*}"
port="${hostport##*:}"
if [ "$host" = "$hostport" ]; then
    port=80
fi

# bash's /dev/tcp: no curl needed; the subshell closes the connection again.
answers() { (exec 3<>"/dev/tcp/${host}/${port}") 2>/dev/null; }

deadline=$((SECONDS + wait_s))
until answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "pivh-kiosk: ${host}:${port} not answering after ${wait_s} s; opening the page anyway" >&2
        break
    fi
    sleep 1
done

browser="${PIVH_KIOSK_BROWSER:-}"
if [ -z "$browser" ]; then
    for candidate in chromium chromium-browser /snap/bin/chromium google-chrome; do
        if command -v "$candidate" >/dev/null 2>&1; then
            browser="$candidate"
            break
        fi
    done
fi
if [ -z "$browser" ]; then
    echo "pivh-kiosk: no Chromium found; install it (sudo snap install chromium) - docs/jetson.md" >&2
    exit 1
fi

# No first-run, crash-restore or translate bubbles over the display; the page is the screen.
exec "$browser" --kiosk --no-first-run --noerrdialogs --disable-infobars \
    --disable-session-crashed-bubble --disable-features=Translate --password-store=basic \
    "$url"
