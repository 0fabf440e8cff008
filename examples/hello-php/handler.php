<?php
// A PHP ORT function, run as `php handler.php` for each event: no shebang, no exec bit.
// The event arrives on stdin (a CloudEvent in structured JSON, ORT's default signature, whose
// payload is "data"), the answer leaves on stdout; stderr goes to the function's log.

$event = json_decode(file_get_contents('php://stdin'), true);
$data = is_array($event) && isset($event['specversion']) ? ($event['data'] ?? null) : $event;
$name = is_array($data) && isset($data['name']) ? $data['name'] : 'world';

fwrite(STDERR, 'hello-php: request ' . getenv('ORT_REQUEST_ID') . PHP_EOL);
echo json_encode(['message' => "Hello, $name!", 'runtime' => 'php ' . PHP_VERSION]), PHP_EOL;
