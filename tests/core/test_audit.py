import logging

from shared.services.audit import CycleRecord, OperationRecord, audit_fields


def test_operation_fields_are_flat_custom_dimensions(caplog):
    caplog.set_level(logging.INFO, logger="shared.services.audit")
    OperationRecord("update", "success", "e1", "005A", ("Email", "LastName"), reason="attributes changed").emit()
    [record] = caplog.records
    # Application Insights turns each extra attribute into its own customDimensions column
    assert record.entra_id == "e1" and record.status == "success" and record.modified_properties == "Email,LastName"
    assert audit_fields(record) == {
        "kind": "operation", "action": "update", "status": "success", "entra_id": "e1", "salesforce_id": "005A",
        "modified_properties": "Email,LastName", "error_code": None, "reason": "attributes changed",
        "message_id": "", "duration_ms": 0.0, "permission_sets_added": "", "permission_sets_removed": "",
    }


def test_permission_set_changes_are_dimensions_and_in_the_line(caplog):
    caplog.set_level(logging.INFO, logger="shared.services.audit")
    OperationRecord("update", "success", "e1", "005A", permission_sets_added=("PermissionSet:A", "PermissionSetGroup:B"),
                    permission_sets_removed=("PermissionSet:C",)).emit()
    [record] = caplog.records
    assert record.getMessage() == "update success entra=e1 sf=005A +PermissionSet:A,PermissionSetGroup:B -PermissionSet:C"
    fields = audit_fields(record)
    assert fields["permission_sets_added"] == "PermissionSet:A,PermissionSetGroup:B"
    assert fields["permission_sets_removed"] == "PermissionSet:C"


def test_cycle_record_flattens_its_counts_and_other_records_are_ignored(caplog):
    caplog.set_level(logging.INFO)
    CycleRecord(3, 3, False, 12.5, {"delta_pages": 2}).emit()
    logging.getLogger("shared.services.audit").info("not an audit record")
    cycle, plain = caplog.records
    assert cycle.delta_pages == 2 and audit_fields(cycle)["messages_sent"] == 3
    assert audit_fields(plain) is None
