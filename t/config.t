#!/usr/bin/perl

# Tests for the configuration of ngx_vetting_module: the shipped policy
# loads, and "nginx -t" refuses bad configuration with a message that
# names what is wrong.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;

###############################################################################

my $t = Test::Vetting->new;
my $rules = "$FindBin::Bin/../lua-free-rules";

sub conf {
    my ($http, $location) = @_;
    $location //= '';

    return <<"EOF";
%%BASE%%

http {
    $http

    server {
        listen 127.0.0.1:%%PORT:nginx%%;

        location /fhir/r4 {
            $location
            return 204;
        }
    }
}
EOF
}

sub refused {
    my ($http, $location, $re, $name) = @_;

    my ($rc, $out) = $t->nginx_t(conf($http, $location));

    ok($rc != 0 && $out =~ $re, $name)
        or diag("exit $rc: $out");
}

# the shipped policy, as README shows it

my ($rc, $out) = $t->nginx_t(<<"EOF");
%%BASE%%

http {
    include $rules/cms-patient-access.conf;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        vetting_tenant acme-health;

        location /oauth2/authorize {
            include $rules/oauth-authorize.conf;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location = /oauth2/token {
            include $rules/oauth-token.conf;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /fhir/r4 {
            include $rules/fhir-api.conf;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location = /vetting/status {
            vetting_endpoint status;
        }
    }
}
EOF

is($rc, 0, 'shipped policy passes nginx -t') or diag($out);

# rules

refused('vetting_rule write window=1h action=block;', '',
        qr/rule "write" needs "threshold="/, 'rule without threshold');
refused('vetting_rule write threshold=3 action=block;', '',
        qr/rule "write" needs .*"window="/, 'rule without window');
refused('vetting_rule write threshold=3 window=1h;', '',
        qr/rule "write" needs .*"action="/, 'rule without action');
refused('vetting_rule writes threshold=3 window=1h action=block;', '',
        qr/invalid rule event "writes"/, 'unknown rule event');
refused('vetting_rule write threshold=3 window=1h action=ban;', '',
        qr/rule "write": invalid action "action=ban"/, 'unknown action');
refused('vetting_rule write threshold=0 window=1h action=log;', '',
        qr/rule "write": invalid threshold "threshold=0"/, 'zero threshold');
refused('vetting_rule write threshold=3 window=10ms action=log;', '',
        qr/rule "write": invalid window "window=10ms"/, 'window too short');
refused('vetting_rule write threshold=3 window=1h action=log foo=1;', '',
        qr/rule "write": invalid parameter "foo=1"/, 'unknown parameter');
refused('vetting_rule unknown_token threshold=3 window=1h action=block;', '',
        qr/rule "unknown_token" counts client addresses/,
        'unknown tokens cannot block an app');

# rates

refused('', 'vetting_endpoint fhir; vetting_rate 10r/x;',
        qr/invalid rate "10r\/x"/, 'bad rate unit');
refused('', 'vetting_endpoint fhir; vetting_rate 0r/s;',
        qr/invalid rate "0r\/s"/, 'zero rate');
refused('', 'vetting_endpoint fhir; vetting_rate 10r/s burst=0;',
        qr/invalid burst "burst=0"/, 'zero burst');
refused('', 'vetting_endpoint fhir; vetting_rate 10r/s per=member;',
        qr/invalid parameter "per=member"/, 'unknown rate key');
refused('', 'vetting_endpoint fhir; vetting_rate 10r/s name=a/b;',
        qr/invalid rate name "name=a\/b"/, 'bad rate name');

refused('', 'vetting_endpoint fhir; vetting_rate 10r/s name=a; '
        . 'vetting_rate 20r/s name=a;',
        qr/duplicate rate name "a"/, 'two rates of one name');

# settings that would do nothing pass, with a warning that says so

sub warned {
    my ($http, $location, $re, $name) = @_;

    my ($rc, $out) = $t->nginx_t(conf($http, $location));

    ok($rc == 0 && $out =~ /\[warn\].*$re/, $name) or diag("exit $rc: $out");
}

warned('', 'vetting_rate 10r/s;',
       qr/"vetting_rate" has no effect in location "\/fhir\/r4" without/,
       'rate without an endpoint');
warned('vetting_rule write threshold=3 window=1h action=block scope=tenant;',
       'vetting_endpoint fhir;',
       qr/rule "write .*scope=tenant" counts per tenant, and location/,
       'tenant rule without a tenant');
warned('vetting_rule country threshold=3 window=1h action=block;', '',
       qr/rule "country .*" counts nothing without "vetting_geoip"/,
       'country rule without a database');

# the rest

refused('vetting_zone vetting;', '',
        qr/invalid zone "vetting", expected name:size/, 'zone without size');
refused('vetting_zone vetting:1k;', '',
        qr/zone "vetting:1k" is too small/, 'zone too small');
refused('vetting_countries USA;', '',
        qr/invalid country "USA"/, 'three-letter country');
refused('vetting_countries us;', '',
        qr/invalid country "us"/, 'lower-case country');
refused('vetting_tenant "a b";', '',
        qr/invalid tenant "a b"/, 'tenant with a space');
refused('vetting_write_status 404;', '',
        qr/must be 403 or 405/, 'write status other than 403 or 405');
refused('', 'vetting_endpoint api;',
        qr/invalid endpoint "api"/, 'unknown endpoint');
refused('', 'vetting_endpoint token base=/x;',
        qr/invalid parameter "base=\/x"/, 'base only for fhir');
refused('vetting_redis 127.0.0.1:6379 password=s3cret db=x;', '',
        qr/invalid parameter "db=\.\.\."/, 'bad redis db');
refused('vetting_redis 127.0.0.1:6379 passwd=s3cret;', '',
        qr/invalid parameter "passwd=\.\.\."/, 'unknown redis parameter');
refused('vetting_redis 127.0.0.1:6379 user=gw;', '',
        qr/"user=" needs "password="/, 'redis user without password');
refused('vetting_redis_backoff 10s 1s;', '',
        qr/invalid back-off "10s 1s"/, 'backoff min above max');
refused('vetting_token_lifetime 0;', '',
        qr/invalid lifetime "0"/, 'zero token lifetime');
refused('vetting_audit_stream 10;', '',
        qr/invalid audit stream length "10"/, 'audit stream too short');
refused('vetting_geoip /nonexistent/country.mmdb;', '',
        qr{"/nonexistent/country.mmdb"}, 'missing country database named');

# a password never comes back in an error message

($rc, $out) = $t->nginx_t(conf(
    'vetting_redis 127.0.0.1:6379 password=s3cret passwd=s3cret;'));
ok($rc != 0 && $out !~ /s3cret/, 'no password in the error')
    or diag($out);

($rc, $out) = $t->nginx_t(<<'EOF');
%%BASE%%

http {
    server {
        listen 127.0.0.1:%%PORT:nginx%%;

        location ~ ^/fhir/ {
            vetting_endpoint fhir;
            return 204;
        }
    }
}
EOF

ok($rc != 0 && $out =~ /regex location needs the "base=" parameter/,
   'regex location without base') or diag($out);

$t->done_testing;

###############################################################################
