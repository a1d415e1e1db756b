#!/bin/sh
# Answer every request with a greeting and the container's hostname, like the walkthrough's app.py.
echo "<h3>Hello ${NAME:-world}!</h3><b>Hostname:</b> $(hostname)<br/>" > /www/index.html
exec httpd -f -p 80 -h /www
