#!/usr/bin/perl

# A paging continuation is a POST to the base whose query names
# "_getpages": it carries no Bundle.  A transaction Bundle POSTed to the
# base stays a write when the query also names "_getpages": a server
# that does not page on POST (or pages only on GET) runs the Bundle.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;
use Test::Vetting::Fake;

###############################################################################

my $t = Test::Vetting->new;

$t->run_upstream('fhir', fhir_server());

$t->write_conf(<<'EOF');
%%BASE%%
worker_processes 1;

http {
    %%HTTP%%

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /batch/r4 {
            vetting_endpoint fhir;
            vetting_batch_reads on;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }
}
EOF

$t->run_nginx;

my $port = $t->port('nginx');
my $fhir = 'application/fhir+json';
my $r;

my $tx = '{"resourceType":"Bundle","type":"transaction","entry":['
    . '{"request":{"method":"DELETE","url":"Patient/m-1"}},'
    . '{"request":{"method":"POST","url":"Observation"},"resource":'
    . '{"resourceType":"Observation","status":"final"}}]}';
my $reads = '{"resourceType":"Bundle","type":"batch","entry":['
    . '{"request":{"method":"GET","url":"Patient/m-1"}}]}';

sub seen {
    my ($id) = @_;

    return scalar grep { ($_->{headers}{'x-test-id'} // '') eq $id }
        $t->upstream_requests('fhir');
}

for my $uri ('/fhir/r4?_getpages=p1', '/fhir/r4/?_getpages=p1',
    '/batch/r4?_getpages=p1')
{
    $r = http_req($port, 'POST', $uri, headers => ['Content-Type' => $fhir,
        'X-Test-Id' => "tx $uri"], body => $tx);

    is($r->status, 405, "transaction to $uri refused");
    is(seen("tx $uri"), 0, "transaction to $uri never reaches the server");
}

# chunked, without Content-Length

$r = http($port, "POST /fhir/r4?_getpages=p1 HTTP/1.1\r\nHost: localhost\r\n"
    . "Content-Type: $fhir\r\nTransfer-Encoding: chunked\r\n"
    . "X-Test-Id: tx chunked\r\nConnection: close\r\n\r\n"
    . sprintf('%x', length $tx) . "\r\n$tx\r\n0\r\n\r\n");
is($r->status, 405, 'chunked transaction refused');
is(seen('tx chunked'), 0, 'chunked transaction never reaches the server');

# what paging and batches of reads did before still passes

$r = http_req($port, 'POST', '/fhir/r4?_getpages=p1&_getpagesoffset=10',
    headers => ['X-Test-Id' => 'paging']);
is($r->status, 200, 'paging continuation passes');

$r = http_req($port, 'POST', '/fhir/r4?_getpages=p1',
    headers => ['Content-Type' => 'application/x-www-form-urlencoded',
        'X-Test-Id' => 'paging form'], body => '_getpagesoffset=10');
is($r->status, 200, 'paging continuation with a form passes');

$r = http_req($port, 'POST', '/batch/r4?_getpages=p1',
    headers => ['Content-Type' => $fhir, 'X-Test-Id' => 'batch'],
    body => $reads);
is($r->status, 200, 'batch of reads where allowed passes');

$t->done_testing;

###############################################################################
