"""Options validate at construction, name the bad option, and merge field by field."""
import pytest

from golem_sync import GolemConfigError, MarketOptions, PackageOptions, PaymentOptions
from golem_sync._options import OptionLayer, merge_layers, parse_section


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
    assert PaymentOptions().platform() == "erc20-hoodi-tglm"
    assert PaymentOptions(network="polygon").platform() == "erc20-polygon-glm"
    monkeypatch.setenv("PAYMENT_NETWORK", "amoy")  # golem-js's variable
    assert PaymentOptions().platform() == "erc20-amoy-tglm"
    monkeypatch.setenv("YAGNA_PAYMENT_NETWORK", "sepolia")  # wins over PAYMENT_NETWORK
    assert parse_section(PaymentOptions, {"budget": 2}).platform() == "erc20-sepolia-tglm"
    assert PaymentOptions(network="hoodi").platform() == "erc20-hoodi-tglm"  # the option wins over both


@pytest.mark.parametrize("network, platform", [
    ("hoodi", "erc20-hoodi-tglm"), ("holesky", "erc20-holesky-tglm"), ("sepolia", "erc20-sepolia-tglm"),
    ("goerli", "erc20-goerli-tglm"), ("rinkeby", "erc20-rinkeby-tglm"), ("amoy", "erc20-amoy-tglm"),
    ("mumbai", "erc20-mumbai-tglm"), ("polygon", "erc20-polygon-glm"), ("mainnet", "erc20-mainnet-glm"),
])
def test_every_network_yagna_knows_is_selectable_with_its_token(network, platform, monkeypatch):
    monkeypatch.delenv("YAGNA_PAYMENT_NETWORK", raising=False)
    assert PaymentOptions(network=network).platform() == platform
    monkeypatch.setenv("YAGNA_PAYMENT_NETWORK", network)
    assert PaymentOptions().platform() == platform


def test_an_explicit_token_wins(monkeypatch):
    monkeypatch.delenv("YAGNA_PAYMENT_NETWORK", raising=False)
    assert PaymentOptions(network="polygon", token="usdc").platform() == "erc20-polygon-usdc"
    assert PaymentOptions(token="glm").platform() == "erc20-hoodi-glm"
    assert PaymentOptions(network="holesky", driver="erc20", token="tglm").resolved_token() == "tglm"


def test_an_unknown_network_names_the_option_and_the_known_ones(monkeypatch):
    monkeypatch.delenv("YAGNA_PAYMENT_NETWORK", raising=False)
    with pytest.raises(GolemConfigError) as info:
        PaymentOptions(network="hodi")
    text = str(info.value)
    assert "payment.network='hodi'" in text and "did you mean 'hoodi'" in text
    for known in ("mainnet", "sepolia", "rinkeby", "goerli", "holesky", "hoodi", "polygon", "mumbai", "amoy"):
        assert known in text
    with pytest.raises(GolemConfigError, match=r"payment.network='ropsten' .*\(known: .*hoodi") as info:
        parse_section(PaymentOptions, {"network": "ropsten"})
    assert "did you mean" not in str(info.value)


def test_an_unknown_network_in_the_environment_fails_when_the_network_is_made(monkeypatch):
    from golem_sync import GolemNetwork
    monkeypatch.setenv("YAGNA_PAYMENT_NETWORK", "holeski")
    with pytest.raises(GolemConfigError, match="YAGNA_PAYMENT_NETWORK='holeski'.*did you mean 'holesky'"):
        PaymentOptions().platform()
    with pytest.raises(GolemConfigError, match="YAGNA_PAYMENT_NETWORK"):
        GolemNetwork({"app_key": "k"})


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


# -- a field given at a layer wins there, whether or not it equals the default ------------------

LAYER_NAMES = ("GolemNetwork", "create_job", "start_work")


def _layers(position, section):
    """The three layers with ``section`` as the market options at ``position``; every layer before
    it sets ``offer_poll_sec=1.0`` and ``subnet_tag="below"``."""
    below = {"offer_poll_sec": 1.0, "subnet_tag": "below"}
    return [OptionLayer.parse({"market": section if index == position else below} if index <= position else {},
                              where=name)
            for index, name in enumerate(LAYER_NAMES)]


@pytest.mark.parametrize("position", [0, 1, 2], ids=LAYER_NAMES)
@pytest.mark.parametrize("form", ["dict", "attrs"])
def test_a_field_given_equal_to_its_default_still_counts_as_given(form, position):
    default = MarketOptions().offer_poll_sec
    section = {"offer_poll_sec": default} if form == "dict" else MarketOptions(offer_poll_sec=default)
    layers = _layers(position, section)
    assert dict(layers[position].sections["market"]) == {"offer_poll_sec": default}
    merged = merge_layers(*layers)
    assert merged.market.offer_poll_sec == default  # wins over the 1.0 of the layers below
    assert merged.market.subnet_tag == ("below" if position else None)  # not given here: inherited


@pytest.mark.parametrize("position", [1, 2], ids=LAYER_NAMES[1:])
@pytest.mark.parametrize("form", ["dict", "attrs"])
def test_a_section_overrides_only_what_it_gives(form, position):
    section = {"max_offer_events": 3} if form == "dict" else MarketOptions(max_offer_events=3)
    merged = merge_layers(*_layers(position, section))
    assert (merged.market.max_offer_events, merged.market.offer_poll_sec, merged.market.subnet_tag) == \
        (3, 1.0, "below")


def test_an_evolved_or_copied_section_sets_every_field():
    import copy
    import pickle

    import attrs

    given = MarketOptions(offer_poll_sec=2.0)
    evolved = attrs.evolve(given, max_offer_events=3)  # a complete value: every field is given
    assert set(OptionLayer.parse({"market": evolved}, where="x").sections["market"]) == \
        {f.name for f in attrs.fields(MarketOptions)}
    for same in (copy.copy(given), copy.deepcopy(given), pickle.loads(pickle.dumps(given))):
        assert dict(OptionLayer.parse({"market": same}, where="x").sections["market"]) == {"offer_poll_sec": 2.0}
    explicit_default = MarketOptions(offer_poll_sec=MarketOptions().offer_poll_sec)
    assert explicit_default == MarketOptions()  # equality and hashing ignore what was given
    assert hash(explicit_default) == hash(MarketOptions())
    assert repr(explicit_default) == repr(MarketOptions())


def test_a_payment_section_keeps_its_given_fields():
    given = PaymentOptions(budget=3.0, event_poll_sec=0.5)
    assert parse_section(PaymentOptions, given) == given
    assert parse_section(PaymentOptions, None) == PaymentOptions()


# -- renamed options: the old names work for one release, with a DeprecationWarning -------------

RENAMED = [(MarketOptions, "market", "payment_timeout_sec", "payment_due_sec", 600),
           (PaymentOptions, "payment", "payment_timeout_sec", "invoice_wait_sec", 7.0)]


@pytest.mark.parametrize("cls, section, old, new, value", RENAMED)
def test_an_old_keyword_argument_warns_naming_the_new_one(cls, section, old, new, value):
    with pytest.warns(DeprecationWarning, match=rf"{section}\.{old} is deprecated; use {section}\.{new}") as seen:
        options = cls(**{old: value})
    assert seen[0].filename == __file__  # the warning points at the caller's line
    assert getattr(options, new) == value
    assert getattr(options, old) == value  # reading the old attribute still works
    assert options == cls(**{new: value})


@pytest.mark.parametrize("cls, section, old, new, value", RENAMED)
def test_an_old_dict_key_warns_and_sets_the_new_field(cls, section, old, new, value):
    with pytest.warns(DeprecationWarning, match=rf"{section}\.{old} is deprecated; use {section}\.{new}") as seen:
        if cls is PaymentOptions:
            parsed = parse_section(PaymentOptions, {old: value})
        else:
            layer = OptionLayer.parse({"market": {old: value}}, where="create_job")
            assert dict(layer.sections["market"]) == {new: value}
            parsed = merge_layers(layer).market
    assert seen[0].filename == __file__
    assert getattr(parsed, new) == value


def test_an_old_keyword_argument_of_a_section_is_set_at_its_layer():
    default = MarketOptions().payment_due_sec
    with pytest.warns(DeprecationWarning):
        job = OptionLayer.parse({"market": MarketOptions(payment_timeout_sec=default)}, where="create_job")
    network = OptionLayer.parse({"market": {"payment_due_sec": 600}}, where="GolemNetwork")
    assert merge_layers(network, job).market.payment_due_sec == default


@pytest.mark.parametrize("cls, section, old, new, value", RENAMED)
def test_old_and_new_name_together_are_an_error(cls, section, old, new, value):
    with pytest.warns(DeprecationWarning), pytest.raises(GolemConfigError, match=rf"{section}\.{new}.*not both"):
        cls(**{old: value, new: value})


@pytest.mark.parametrize("cls, section, old, new, value", RENAMED)
def test_the_new_names_do_not_warn(cls, section, old, new, value, recwarn):
    assert getattr(cls(**{new: value}), new) == value
    assert getattr(cls(), old) == getattr(cls(), new)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_the_renamed_defaults_are_unchanged():
    assert MarketOptions().payment_due_sec == 43200
    assert PaymentOptions().invoice_wait_sec == 60.0


def test_the_demand_carries_the_renamed_payment_due():
    from golem_sync._market.demand import build_demand
    from golem_sync._package import Decorations

    demand = build_demand(Decorations({}, []), Decorations({}, []), MarketOptions(payment_due_sec=900), "p", now=0)
    assert demand.properties["golem.com.scheme.payu.payment-timeout-sec?"] == 900
