"""Recording a walk with a phone's browser: the page (page/), the upload server (server.py), where
uploads land (store.py), the HTTPS certificate (certificate.py) and the sensor log (sensors.py)."""
