*** Comments ***
edgekit self-test on Renode, one test per board Renode runs: the hardware build of each real
board (the emulated build of netduinoplus2), run unmodified on Renode's model of its chip, must
print a complete report for its own board and no fault. One Renode process runs them all.
Run (where renode-test is installed), with one folder per board holding its firmware.elf:
    renode-test boards/renode/selftest.robot --variable BUILDS:/abs/path/builds
The host then checks the report's CRCs and known answer (hil_tests/test_renode.py does both).
Renode's keywords read an argument like `name=value` as a named argument: match such lines
with `content=name=value`.

*** Settings ***
Suite Setup       Setup
Suite Teardown    Teardown
Test Teardown     Test Teardown
Test Template     Self-Test Prints A Complete Report
Resource          ${RENODEKEYWORDS}

*** Variables ***
${BUILDS}         ${EMPTY}

*** Test Cases ***          BOARD            UART
netduinoplus2               netduinoplus2    sysbus.usart1
disco-f746ng                disco-f746ng     sysbus.usart1
nucleo-h743zi               nucleo-h743zi    sysbus.usart3
nrf52840dk                  nrf52840dk       sysbus.uart0

*** Keywords ***
Self-Test Prints A Complete Report
    [Arguments]    ${board}    ${uart}
    Execute Command             $elf=@${BUILDS}/${board}/firmware.elf
    Execute Command             include @${CURDIR}/${board}.resc
    Create Terminal Tester      ${uart}    timeout=30
    Start Emulation
    Wait For Line On Uart       @@EDGEKIT-BEGIN v1
    Wait For Line On Uart       content=board=${board}
    Wait For Line On Uart       content=payload=selftest
    Wait For Line On Uart       @@EDGEKIT-END records=\\d+ crc32=[0-9a-f]{8}    treatAsRegex=true
