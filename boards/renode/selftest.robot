*** Comments ***
edgekit self-test on Renode: the firmware must print a complete report and no fault.
Run (where renode-test is installed):
    renode-test boards/renode/selftest.robot --variable ELF:/abs/path/firmware.elf
    ...    --variable RESC:/abs/path/boards/renode/netduinoplus2.resc --variable UART:sysbus.usart1
The host then checks the report's CRCs and known answer (hil_tests/test_renode.py does both).

*** Settings ***
Suite Setup       Setup
Suite Teardown    Teardown
Test Teardown     Test Teardown
Resource          ${RENODEKEYWORDS}

*** Variables ***
${ELF}            ${EMPTY}
${RESC}           ${CURDIR}/netduinoplus2.resc
${UART}           sysbus.usart1

*** Test Cases ***
Self-Test Prints A Complete Report
    Execute Command             $elf=@${ELF}
    Execute Command             include @${RESC}
    Create Terminal Tester      ${UART}    timeout=30
    Start Emulation
    Wait For Line On Uart       @@EDGEKIT-BEGIN v1
    Wait For Line On Uart       payload=selftest
    Wait For Line On Uart       @@EDGEKIT-END records=\\d+ crc32=[0-9a-f]{8}    treatAsRegex=true
