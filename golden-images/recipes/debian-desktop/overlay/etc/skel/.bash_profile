# vdi: the desktop session: X on tty1 (autologin), with openbox.
[ -f ~/.profile ] && . ~/.profile
if [ -z "${DISPLAY:-}" ] && [ "$(tty)" = /dev/tty1 ]; then
    exec startx -- -nolisten tcp vt1 >~/.xsession-errors 2>&1
fi
