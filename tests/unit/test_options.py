"""Options validate at construction, name the bad option, and merge field by field."""
import pytest

from golem_sync import GolemConfigError, MarketOptions, PackageOptions, PaymentOptions
from golem_sync.options import OptionLayer, merge_layers, parse_section


def test_layers_merge_field_by_field_later_wins():
    network = OptionLayer.parse({"package": {"image_tag": "golem/alpine:latest", "min_mem_gib": 1}},
                                where="GolemNetwork")
    job = OptionLayer.parse({"package": {"min_mem_gib": 2}, "job": {"max_retries": 2}}, where="create_job")
    call = OptionLayer.parse({"package": PackageOptions(min_storage_gib=8)}, where="start_work")
    merged = merge_layers(network, job, call)
    assert merged.package.image_tag == "golem/alpine:latest"  # kept from the network
    assert merged.package.min_mem_gib == 2  # job overrides network
    assert merged.package.min_storage_gib == 8  # call adds its own
    assert merged.job.max_retries == 2


@pytest.mark.parametrize("options, fragment", [
    ({"package": {"min_mem_gb": 1}}, "package.min_mem_gb; did you mean package.min_mem_gib"),
    ({"markt": {}}, "did you mean 'market'"),
    ({"payment": {"budget": 1}}, "network-wide"),
    ({"job": {"startup_timeout_sec": -1}}, "job.startup_timeout_sec must be greater than 0"),
    ({"activity": {"execute_timeout_sec": "10"}}, "activity.execute_timeout_sec must be a number"),
    ({"job": {"max_retries": 1.5}}, "job.max_retries must be an integer"),
    ({"market": {"allowed_name_regex": "("}}, "market.allowed_name_regex is not a valid regular expression"),
    ({"market": {"proposal_filter": 3}}, "market.proposal_filter must be callable"),
    ({"package": "golem/alpine"}, "package options must be a dict or PackageOptions"),
    ({"work": {"raise_on_command_error": "yes"}}, "work.raise_on_command_error must be True or False"),
])
def test_bad_options_name_the_option(options, fragment):
    with pytest.raises(GolemConfigError) as info:
        OptionLayer.parse(options, where="create_job")
    assert fragment in str(info.value)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        MarketOptions(expiration_sec=0)


def test_payment_platform_follows_network_and_env(monkeypatch):
    monkeypatch.delenv("YAGNA_PAYMENT_NETWORK", raising=False)
    monkeypatch.delenv("PAYMENT_NETWORK", raising=False)
    assert PaymentOptions().platform() == "erc20-holesky-tglm"
    assert PaymentOptions(network="polygon").platform() == "erc20-polygon-glm"
    monkeypatch.setenv("YAGNA_PAYMENT_NETWORK", "sepolia")
    assert parse_section(PaymentOptions, {"budget": 2}).platform() == "erc20-sepolia-tglm"


def test_list_options_accept_lists_and_single_strings():
    options = MarketOptions(allowed_provider_names=["a", "b"], denied_provider_ids="x")
    assert options.allowed_provider_names == ("a", "b")
    assert options.denied_provider_ids == ("x",)


def test_network_rejects_a_yagna_argument_of_the_wrong_type():
    from golem_sync import GolemNetwork
    with pytest.raises(GolemConfigError, match="yagna must be a YagnaConfig"):
        GolemNetwork("http://127.0.0.1:7465")
    with pytest.raises(GolemConfigError, match="max_workers"):
        GolemNetwork({"app_key": "k"}, max_workers=0)
    with pytest.raises(GolemConfigError, match="unknown yagna option"):
        GolemNetwork({"app_key": "k", "apikey": "x"})
