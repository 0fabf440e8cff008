"""Events as CloudEvents 1.0: AWS event sources mapped to plain attributes and data.

`ort_core.events.aws` maps a Lambda event to `Mapped` pairs (docs/events.md holds the table);
`ort_core.events.cloudevent` turns a pair into the SDK's CloudEvent or structured-mode JSON.
Nothing here imports the cloudevents SDK until `to_cloudevent` is called.
"""
