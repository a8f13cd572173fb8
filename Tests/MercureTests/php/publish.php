<?php
// Publishes one update with Symfony's Mercure component (Debian's php-symfony-mercure), as a
// Symfony application does: php publish.php HUB_URL TOKEN TOPIC DATA [private]
// Prints the id the hub answered; exits 1 with the reason when the publish fails.
declare(strict_types=1);

require_once 'Symfony/Component/Mercure/autoload.php';

use Symfony\Component\Mercure\Hub;
use Symfony\Component\Mercure\Jwt\StaticTokenProvider;
use Symfony\Component\Mercure\Update;

[$script, $url, $token, $topic, $data] = $argv;
$private = ($argv[5] ?? '') === 'private';

$hub = new Hub($url, new StaticTokenProvider($token));
try {
    echo $hub->publish(new Update($topic, $data, $private));
} catch (\Throwable $e) {
    $reason = $e->getPrevious() ? $e->getPrevious()->getMessage() : $e->getMessage();
    fwrite(STDERR, get_class($e) . ': ' . $e->getMessage() . ' (' . $reason . ")\n");
    exit(1);
}
