#!/usr/bin/perl

# Builds a small MaxMind DB country database for tests.
#
#     scripts/mkmmdb.pl --layout geoip2|flat --ip-version 4|6 [--no-alias]
#         [--record-size 24|28|32] [--type NAME] --out FILE NETWORK=CC ...
#
#     scripts/mkmmdb.pl --layout geoip2 --ip-version 6 --out t.mmdb \
#         203.0.113.0/24=DE 198.51.100.0/24=US 2001:db8:1::/48=FR
#
# layout geoip2 writes {country => {iso_code => CC}} as MaxMind's GeoIP2
# and GeoLite2 databases do; flat writes {country_code => CC}.  CC is
# written as given (tests use malformed codes on purpose); CC "-" writes
# a record without any country.  An IPv6 database aliases ::ffff:0:0/96
# (and the writer's other IPv4 aliases) to the IPv4 data unless
# --no-alias.  Documentation and private networks may be inserted: the
# writer's removal of reserved networks is turned off.

use strict;
use warnings;

use Encode qw(decode);
use Getopt::Long qw(GetOptions);
use MaxMind::DB::Writer::Tree;


my %types = (
    country      => 'map',
    iso_code     => 'utf8_string',
    country_code => 'utf8_string',
    note         => 'utf8_string',
);


sub usage {
    my ($why) = @_;

    print STDERR "mkmmdb.pl: $why\n" if defined $why;
    print STDERR "usage: mkmmdb.pl --layout geoip2|flat --ip-version 4|6"
        . " [--no-alias] [--record-size 24|28|32] [--type NAME]"
        . " --out FILE NETWORK=CC ...\n";
    exit 2;
}


sub record_for {
    my ( $layout, $cc ) = @_;

    return { note => 'no country' } if $cc eq '-';
    return { country => { iso_code => $cc } } if $layout eq 'geoip2';
    return { country_code => $cc };
}


my %opt = (
    'record-size' => 24,
    type          => 'Vetting-Test-Country',
);

GetOptions(
    \%opt,
    'layout=s', 'ip-version=i', 'no-alias', 'record-size=i', 'type=s',
    'out=s',
) or usage();

usage('--layout must be geoip2 or flat')
    unless defined $opt{layout} && $opt{layout} =~ /\A(?:geoip2|flat)\z/;
usage('--ip-version must be 4 or 6')
    unless defined $opt{'ip-version'} && $opt{'ip-version'} =~ /\A[46]\z/;
usage('--record-size must be 24, 28 or 32')
    unless $opt{'record-size'} =~ /\A(?:24|28|32)\z/;
usage('--out is required') unless defined $opt{out};
usage('give at least one NETWORK=CC (the writer cannot write an empty tree)')
    unless @ARGV;

my $v6 = $opt{'ip-version'} == 6;

my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version               => $opt{'ip-version'},
    record_size              => $opt{'record-size'},
    database_type            => $opt{type},
    languages                => ['en'],
    description              => { en => 'ngx_vetting_module test data' },
    alias_ipv6_to_ipv4       => ( $v6 && !$opt{'no-alias'} ) ? 1 : 0,
    remove_reserved_networks => 0,
    map_key_type_callback    => sub { $types{ $_[0] } },
);

for my $arg (@ARGV) {
    my ( $network, $cc ) = split /=/, $arg, 2;

    usage("\"$arg\" is not NETWORK=CC")
        unless defined $cc
        && length $cc
        && $network =~ m{\A[0-9a-fA-F.:]+/[0-9]+\z};
    usage("\"$network\" is an IPv6 network in an IPv4 database")
        if !$v6 && $network =~ /:/;

    $tree->insert_network( $network,
        record_for( $opt{layout}, decode( 'UTF-8', $cc, Encode::FB_CROAK ) ) );
}

# write to a temporary name first, so a failed run leaves no half file
my $tmp = "$opt{out}.tmp$$";

my $ok = eval {
    open my $fh, '>:raw', $tmp or die "cannot create \"$tmp\": $!\n";
    $tree->write_tree($fh);
    close $fh or die "cannot write \"$tmp\": $!\n";
    rename $tmp, $opt{out}
        or die "cannot rename \"$tmp\" to \"$opt{out}\": $!\n";
    1;
};

unless ($ok) {
    my $why = $@;

    unlink $tmp;
    die "mkmmdb.pl: $why";
}
