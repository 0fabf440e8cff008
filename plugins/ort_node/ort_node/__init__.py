"""ORT's Node.js language plugin: handlers run in one persistent Node worker per sandbox."""
