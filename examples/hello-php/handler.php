<?php
// A PHP ORT function, run as `php handler.php` for each event: no shebang, no exec bit.
// The event arrives on stdin, the answer leaves on stdout; stderr goes to the function's log.

$event = json_decode(file_get_contents('php://stdin'), true);
$name = is_array($event) && isset($event['name']) ? $event['name'] : 'world';

fwrite(STDERR, 'hello-php: request ' . getenv('ORT_REQUEST_ID') . PHP_EOL);
echo json_encode(['message' => "Hello, $name!", 'runtime' => 'php ' . PHP_VERSION]), PHP_EOL;
