import re

import pytest

from labtrain.errors import ConfigError
from storage.labeling_config import parse_labeling_config

PRODUCT_PAGE_CHOICES = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="smokingstatus" toName="text" choice="multiple" showInLine="true">
    <Choice value="Smoker"/><Choice value="Past Smoker"/><Choice value="Nonsmoker"/>
  </Choices>
  <Choices name="age" toName="text" choice="single" showInLine="true">
    <Choice value="Child (less than 18y)" hotkey="c"/><Choice value="Adult (19-50y)" hotkey="a"/>
    <Choice value="Aged (50+y)" hotkey="o"/>
  </Choices>
  <Choices name="gender" toName="text" choice="single" {train}>
    <Choice value="Female" hotkey="f"/><Choice value="Male" hotkey="m"/>
  </Choices>
</View>
"""

MIXED = """
<View>
  <Labels name="label" toName="text">
    <Label value="PROBLEM" model="ner_clinical"/>
    <Label value="DRUG"/>
    <Label value="Absent" assertion="true" model="assertion_jsl_annotation_manual.model"/>
    <Label value="Past" assertion="true" model="assertion_jsl_annotation_manual.model"/>
  </Labels>
  <Relations><Relation value="treats"/></Relations>
  <Text name="text" value="$text"/>
</View>
"""

VISUAL = """
<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image"><Label value="header"/><Label value="question"/></RectangleLabels>
</View>
"""


def test_classification_trains_the_alphabetically_first_choices_group_by_default():
    config = parse_labeling_config(PRODUCT_PAGE_CHOICES.format(train=""))
    assert config.classification_group.name == "age"
    assert not config.classification_group.multiple
    assert config.training_types() == ["classification"]


def test_train_attribute_picks_the_classification_group():
    config = parse_labeling_config(PRODUCT_PAGE_CHOICES.format(train='train="true"'))
    assert config.classification_group.name == "gender"
    assert config.labels_for("classification") == ["Female", "Male"]


def test_multiple_choice_group_is_multi_label():
    xml = PRODUCT_PAGE_CHOICES.format(train="").replace('name="smokingstatus"', 'name="smokingstatus" train="true"')
    group = parse_labeling_config(xml).classification_group
    assert group.name == "smokingstatus" and group.multiple


def test_mixed_project_offers_ner_assertion_and_relation():
    config = parse_labeling_config(MIXED)
    assert config.training_types() == ["ner", "assertion", "relation"]
    assert config.ner_labels == ["PROBLEM", "DRUG"]
    assert config.assertion_labels == ["Absent", "Past"]
    assert config.relations == ["treats"]


def test_image_rectangle_labels_offer_visual_ner():
    config = parse_labeling_config(VISUAL)
    assert config.training_types() == ["visual_ner"]
    assert config.visual_labels == ["header", "question"]


def test_assertion_label_predicted_by_a_ner_model_is_rejected():
    xml = MIXED.replace(
        'value="Past" assertion="true" model="assertion_jsl_annotation_manual.model"',
        'value="Past" assertion="true" model="ner_clinical"',
    )
    with pytest.raises(ConfigError, match="'Past'.*not possible to mark a label as an Assertion Status label"):
        parse_labeling_config(xml)


def test_more_than_one_assertion_model_is_rejected():
    xml = MIXED.replace(
        'value="Past" assertion="true" model="assertion_jsl_annotation_manual.model"',
        'value="Past" assertion="true" model="assertion_other"',
    )
    with pytest.raises(ConfigError, match="only one Assertion Status model"):
        parse_labeling_config(xml)


@pytest.mark.parametrize(
    "xml, fault",
    [
        ("<View><Labels", "not valid XML"),
        ('<View><Labels toName="text"><Label value="A"/></Labels></View>', "'name' and 'toName'"),
        ('<View><Choices name="c" choice="some"><Choice value="a"/></Choices></View>', "choice='some'"),
        ('<View><Choices name="c"/></View>', "no <Choice"),
        (
            '<View><Choices name="a" train="true"><Choice value="x"/></Choices>'
            '<Choices name="b" train="true"><Choice value="y"/></Choices></View>',
            'train="true"',
        ),
    ],
)
def test_malformed_configs_name_the_fault(xml, fault):
    with pytest.raises(ConfigError, match=re.escape(fault)):
        parse_labeling_config(xml)
