"""The built-in page (index.html, app.js, style.css, vendored uPlot) and the page tracker (t.js),
shipped as package data; routes.py serves them."""
