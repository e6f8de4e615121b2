#!/bin/sh
# A tiny "guest" for the process driver: it announces readiness the way the tiny Linux guest
# does on its serial console, then stays up until it is told to stop.
echo "hello from $(hostname) in $(pwd)"
echo "BLIXARD-GUEST-READY"
trap 'echo "stopping"; exit 0' TERM INT
while :; do sleep 1; done
